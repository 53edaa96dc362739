"""alkaid's estimate is the cost of the design the study's backend builds, not of another one."""

from __future__ import annotations

import pytest

from hqsearch.backends import build_design, estimate_backend
from hqsearch.config.schema import SynthesisSection
from hqsearch.firmware.rtl import rtl_model


def cost(comb, cfg: SynthesisSection, fused: bool) -> float:
    rtl = rtl_model(comb, cfg, "unwritten", fuses_adders=fused)
    return float(sum(stage.cost for stage in rtl.fsm.logic.values()))


def test_the_estimate_is_of_the_design_the_backend_builds(tiny_model, tmp_path):
    """Yosys's synth_xilinx does not map alkaid's ternary adders to one LUT per bit, so the Yosys backend
    builds the unfused design and its designs are told with that design's cost; Vivado's with the fused."""
    model, _, ebops = tiny_model
    comb = build_design(model, ebops, SynthesisSection(), tmp_path).comb
    fused, unfused = cost(comb, SynthesisSection(), True), cost(comb, SynthesisSection(), False)
    assert fused != unfused  # the two designs differ, so the estimate has to pick the right one
    for backend, expected in (("yosys", unfused), ("vivado-rtl", fused), ("estimate", fused)):
        cfg = SynthesisSection(backend=backend)
        design = build_design(model, ebops, cfg, tmp_path / backend)
        luts = estimate_backend(cfg).synthesize(design, cfg, tmp_path).metrics["estimated_luts"]
        assert luts == pytest.approx(expected), backend
