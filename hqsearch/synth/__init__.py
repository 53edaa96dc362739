"""Synthesis backends behind one interface, and `measure`, which every caller uses.

`measure` runs the configured backend and puts the da4ml estimate and the calibrated EBOPs next to
whatever the backend measured, each labelled with its source, so estimates and measurements can be
compared and are never mixed up.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..config import SynthesisSection
from .base import Backend, Design, SynthResult
from .estimate import SOURCE as ESTIMATE_SOURCE
from .estimate import EstimateBackend, estimate
from .hls import VitisHLSBackend, VivadoHLSBackend
from .tools import SynthError
from .vivado_rtl import VivadoRTLBackend
from .yosys import YosysBackend

BACKENDS: dict[str, type[Backend]] = {
    "estimate": EstimateBackend,
    "yosys": YosysBackend,
    "vivado": VivadoHLSBackend,
    "vitis": VitisHLSBackend,
    "vivado-rtl": VivadoRTLBackend,
}


def get_backend(name: str) -> Backend:
    return BACKENDS[name]()


def uses_hls4ml(cfg: SynthesisSection) -> bool:
    """Whether the backend builds an hls4ml project (at the firmware stage, for its C++ emulation), and so
    needs the Keras model, not only da4ml's logic. The one place this is answered."""
    return get_backend(cfg.backend).emulation == "hls4ml"


def measure(design: Design, cfg: SynthesisSection, workdir: Path, timeout: float | None = None) -> SynthResult:
    result = get_backend(cfg.backend).synthesize(design, cfg, workdir, timeout)
    est = estimate(design, cfg)
    metrics = {**result.metrics, "ebops": design.ebops}
    sources = {**result.sources, "ebops": design.ebops_source}
    for k in ("estimated_luts", "estimated_ffs"):
        metrics[k], sources[k] = est[k], ESTIMATE_SOURCE
    for k in ("latency_cycles", "latency_ns"):  # RTL backends without a timing model use da4ml's pipeline
        if k not in metrics:
            metrics[k], sources[k] = est[k], ESTIMATE_SOURCE
    return replace(result, metrics=metrics, sources=sources)


__all__ = ["BACKENDS", "Backend", "Design", "SynthError", "SynthResult", "get_backend", "measure", "uses_hls4ml"]
