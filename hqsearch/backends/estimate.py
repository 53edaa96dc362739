"""The cheap path: alkaid's own cost model, no synthesis tool.

The numbers are those of the RTL model the RTL backends write (`firmware.rtl.rtl_model`), so the estimate and the
measurement describe the same design: LUTs are the cost of its stages' adder logic (after alkaid's
ternary-adder fusion), FFs its pipeline registers at the configured latency cutoff, latency its
number of clocked stages. Distributed arithmetic uses no DSPs.
"""

from __future__ import annotations

from pathlib import Path

from hqsearch.backends.base import Backend, Design, SynthResult
from hqsearch.config.schema import SynthesisSection

SOURCE = "alkaid estimate"
ESTIMATED = ("luts", "ffs", "dsps", "latency_cycles", "latency_ns")  # what it predicts of a synthesis backend


def estimate(design: Design, cfg: SynthesisSection, fuses_adders: bool) -> dict[str, float]:
    """alkaid's numbers for the RTL a backend that does (or does not) fuse adders would build."""
    from hqsearch.firmware.rtl import rtl_model

    comb = design.comb
    if len(comb.ops) == 0:  # a constant: nothing to build
        luts, ffs, cycles = 0.0, 0.0, 0
    else:
        rtl = rtl_model(comb, cfg, Path("unwritten"), fuses_adders=fuses_adders)  # built in memory, never written
        luts = float(sum(stage.cost for stage in rtl.fsm.logic.values()))
        ffs, cycles = float(rtl.reg_bits), int(rtl.latency or 0)
    return {
        "estimated_luts": luts,
        "estimated_ffs": ffs,
        "latency_cycles": float(cycles),
        "latency_ns": cycles * cfg.clock_period,
    }


class EstimateBackend(Backend):
    """The cheap fidelity: no project, no tool. It describes the RTL of the backend it stands in for
    (`fuses_adders`: that backend's; as Vivado builds it when the study's backend is this one)."""

    name = "estimate"

    def __init__(self, fuses_adders: bool = True) -> None:
        self.fuses_adders = fuses_adders

    def synthesize(
        self, design: Design, cfg: SynthesisSection, workdir: Path, timeout: float | None = None
    ) -> SynthResult:
        est = estimate(design, cfg, self.fuses_adders)
        metrics = {**est, "luts": est["estimated_luts"], "ffs": est["estimated_ffs"], "dsps": 0.0}
        return SynthResult(metrics=metrics, sources=dict.fromkeys(metrics, SOURCE), tool=SOURCE)
