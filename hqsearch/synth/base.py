"""What every synthesis backend takes and gives back.

A `SynthResult` carries, next to each number, the tool that produced it, so an estimate is never
mistaken for a measurement.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class Design:
    """A trained, calibrated model, its traced logic and, for the HLS backends, its hls4ml project."""

    model: Any  # keras.Model
    comb: Any  # da4ml.types.CombLogic
    ebops: float
    hls_model: Any = None  # hls4ml ModelGraph, written and compiled; None for the RTL backends
    ebops_source: str = "hgq trace_minmax (calibrated)"


@dataclass(frozen=True)
class SynthResult:
    metrics: dict[str, float]  # luts, ffs, dsps, latency_cycles, latency_ns, estimated_luts, ...
    sources: dict[str, str]  # metric -> the tool that produced it ("da4ml estimate", "yosys 0.47", ...)
    tool: str
    files: list[Path] = field(default_factory=list)  # reports and logs worth keeping as artifacts
    cache_key: str | None = None
    cache_hit: bool = False
    details: dict[str, Any] = field(default_factory=dict)  # tool-specific extras (cell counts, II, ...)


class Backend(Protocol):
    name: str
    emulation: str  # "da4ml": accuracy from da4ml's emulation; "hls4ml": from the compiled HLS project

    def synthesize(self, design: Design, cfg: Any, workdir: Path, timeout: float | None = None) -> SynthResult: ...
