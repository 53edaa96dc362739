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
    """A trained, calibrated model and its traced logic."""

    model: Any  # keras.Model
    comb: Any  # da4ml.types.CombLogic
    ebops: float


@dataclass(frozen=True)
class SynthResult:
    metrics: dict[str, float]  # luts, ffs, dsps, latency_cycles, latency_ns, estimated_luts, ...
    sources: dict[str, str]  # metric -> the tool that produced it ("da4ml estimate", "yosys 0.47", ...)
    tool: str
    files: list[Path] = field(default_factory=list)  # reports worth keeping as artifacts


class Backend(Protocol):
    name: str

    def synthesize(self, design: Design, cfg: Any, workdir: Path) -> SynthResult: ...
