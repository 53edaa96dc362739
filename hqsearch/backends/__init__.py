"""Synthesis backends behind one interface, and `measure`, which every caller uses.

`measure` is the two fidelities as two calls on one interface: the cheap one (alkaid's estimate) always,
then the configured backend unless the caller's `skip` says the design cannot matter. It puts the
estimate and the calibrated EBOPs next to whatever the backend measured, each labelled with its source,
so estimates and measurements can be compared and are never mixed up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from hqsearch.backends.base import Backend, Design, SynthResult
from hqsearch.backends.estimate import ESTIMATED, EstimateBackend
from hqsearch.backends.estimate import SOURCE as ESTIMATE_SOURCE
from hqsearch.backends.hls import VitisHLSBackend, VivadoHLSBackend
from hqsearch.backends.tools import SynthError
from hqsearch.backends.vivado_rtl import VivadoRTLBackend
from hqsearch.backends.yosys import YosysBackend
from hqsearch.config.schema import SynthesisSection
from hqsearch.study.attrs import FAMILY_KEY

if TYPE_CHECKING:
    import keras

BACKENDS: dict[str, type[Backend]] = {
    "estimate": EstimateBackend,
    "yosys": YosysBackend,
    "vivado": VivadoHLSBackend,
    "vitis": VitisHLSBackend,
    "vivado-rtl": VivadoRTLBackend,
}


def get_backend(name: str) -> Backend:
    return BACKENDS[name]()


def build_design(model: keras.Model, ebops: float, cfg: SynthesisSection, workdir: Path) -> Design:
    """Trace the model, and build what the backend needs besides (the HLS backends' hls4ml project)."""
    from hqsearch.firmware.emulate import trace

    comb = trace(model, cfg)
    return Design(model, comb, ebops, get_backend(cfg.backend).prepare(model, cfg, workdir))


def estimate_backend(cfg: SynthesisSection) -> EstimateBackend:
    """The estimate of the design the configured backend builds (with or without fused adders)."""
    return EstimateBackend(get_backend(cfg.backend).fuses_adders)


def uses_hls4ml(cfg: SynthesisSection) -> bool:
    """Whether the backend builds an hls4ml project (at the firmware stage, for its C++ emulation), and so
    needs the Keras model, not only alkaid's logic. The one place this is answered."""
    return get_backend(cfg.backend).emulation == "hls4ml"


def hls4ml_family(cfg: SynthesisSection) -> str:
    """An HLS design's settings in a few words: designs alike in them are measured alike."""
    return f"{cfg.strategy}, reuse {cfg.reuse_factor}, {cfg.io_type}"


def measure(
    design: Design,
    cfg: SynthesisSection,
    workdir: Path,
    timeout: float | None = None,
    skip: Callable[[dict[str, float]], str | None] = lambda estimate: None,
    family: bool = False,
) -> SynthResult:
    """The design's estimate, then the configured backend unless `skip(estimate)` gives a reason not to.
    With `family` (the search chooses hls4ml settings), the estimate carries the design's settings, whose
    measurements follow lines of their own (see `fidelity`)."""
    cheap = estimate_backend(cfg).synthesize(design, cfg, workdir)
    family = {FAMILY_KEY: hls4ml_family(cfg)} if family and uses_hls4ml(cfg) else {}
    if cfg.backend == "estimate":
        result = cheap
    elif (why := skip({**cheap.metrics, **family})) is not None:
        label = f"{ESTIMATE_SOURCE} (not synthesised: {why})"
        result = replace(cheap, sources=dict.fromkeys(cheap.sources, label), tool=label, skipped=why)
    else:
        result = get_backend(cfg.backend).synthesize(design, cfg, workdir, timeout)
    metrics = {**result.metrics, "ebops": design.ebops}
    sources = {**result.sources, "ebops": design.ebops_source}
    for k in ("estimated_luts", "estimated_ffs"):
        metrics[k], sources[k] = cheap.metrics[k], ESTIMATE_SOURCE
    for k in ("latency_cycles", "latency_ns"):  # RTL backends without a timing model use alkaid's pipeline
        if k not in metrics:
            metrics[k], sources[k] = cheap.metrics[k], ESTIMATE_SOURCE
    estimate = {**{k: cheap.metrics[k] for k in ESTIMATED}, **family}
    return replace(result, metrics=metrics, sources=sources, estimate=estimate)


__all__ = [
    "BACKENDS",
    "Backend",
    "Design",
    "SynthError",
    "SynthResult",
    "build_design",
    "estimate_backend",
    "get_backend",
    "measure",
    "uses_hls4ml",
]
