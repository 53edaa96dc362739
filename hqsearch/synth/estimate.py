"""The cheap path: da4ml's own cost model, no synthesis tool.

LUTs are da4ml's adder-logic cost, FFs the pipeline registers at the configured latency cutoff,
latency the number of pipeline stages. Distributed arithmetic uses no DSPs.
"""

from __future__ import annotations

from pathlib import Path

from ..config import SynthesisSection
from .base import Backend, Design, SynthResult

SOURCE = "da4ml estimate"
ESTIMATED = ("luts", "ffs", "dsps", "latency_cycles", "latency_ns")  # what it predicts of a synthesis backend


def estimate(design: Design, cfg: SynthesisSection) -> dict[str, float]:
    from da4ml.trace import to_pipeline

    comb = design.comb
    luts = float(comb.cost)
    if cfg.latency_cutoff > 0 and len(comb.ops) > 0:
        pipe = to_pipeline(comb, cfg.latency_cutoff, verbose=False)
        cycles, ffs = len(pipe.solutions), float(pipe.reg_bits)
    else:
        cycles, ffs = 0, 0.0  # purely combinational
    return {
        "estimated_luts": luts,
        "estimated_ffs": ffs,
        "latency_cycles": float(cycles),
        "latency_ns": cycles * cfg.clock_period,
    }


class EstimateBackend(Backend):
    """The cheap fidelity: no project, no tool."""

    name = "estimate"

    def synthesize(
        self, design: Design, cfg: SynthesisSection, workdir: Path, timeout: float | None = None
    ) -> SynthResult:
        est = estimate(design, cfg)
        metrics = {**est, "luts": est["estimated_luts"], "ffs": est["estimated_ffs"], "dsps": 0.0}
        return SynthResult(metrics=metrics, sources=dict.fromkeys(metrics, SOURCE), tool=SOURCE)
