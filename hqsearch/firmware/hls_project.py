"""An hls4ml project for the HLS backends: written with the pragma fix-ups, compiled for its C++ emulation.

Written at the firmware stage (the backend's `prepare`), because the accuracy the HLS backends report
is that of this project's bit-exact C++ emulation.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from hqsearch.config.schema import SynthesisSection
from hqsearch.exceptions import FirmwareError
from hqsearch.firmware.pragmas import apply_fixups

if TYPE_CHECKING:
    import keras


# config's strategy -> hls4ml 1.3's spelling. hls4ml compares 'distributed_arithmetic' case-sensitively
# (a capitalised spelling silently falls back to the latency templates); Latency/Resource are case-free.
HLS_STRATEGIES = {"latency": "Latency", "resource": "Resource", "distributed_arithmetic": "distributed_arithmetic"}


def hls_write(model: keras.Model, cfg: SynthesisSection, out_dir: Path, hls4ml_backend: str):
    """The model as a written (not compiled) hls4ml project with the pragma fix-ups applied.

    Precisions are not passed: hls4ml takes HGQ2's quantizers and propagates them bit-exactly.
    `hls4ml_backend` is hls4ml's name for the backend (`HLSBackend.hls4ml_backend`).
    """
    import os

    import hls4ml

    if cfg.strategy == "distributed_arithmetic" and cfg.reuse_factor != 1:
        raise FirmwareError(
            f"synthesis.strategy 'distributed_arithmetic' needs reuse_factor 1 in hls4ml, got {cfg.reuse_factor}"
        )
    settings = f"backend={cfg.backend}, io_type={cfg.io_type}, strategy={cfg.strategy}, reuse_factor={cfg.reuse_factor}"
    out_dir = Path(out_dir)
    # the distributed-arithmetic pass reads its solver's delay constraint from the environment
    old_dc = os.environ.get("DA_HARD_DC")
    os.environ["DA_HARD_DC"] = str(cfg.hard_dc)
    try:
        hls = hls4ml.converters.convert_from_keras_model(
            model,
            output_dir=str(out_dir),
            backend=hls4ml_backend,
            io_type=cfg.io_type,
            part=cfg.part,
            clock_period=cfg.clock_period,
            hls_config={
                "Model": {
                    "Strategy": HLS_STRATEGIES[cfg.strategy],
                    "ReuseFactor": cfg.reuse_factor,
                    "Precision": "fixed<-1,0>",
                }
            },
        )
        hls.write()
    except Exception as err:
        raise FirmwareError(f"hls4ml cannot convert this model with {settings}: {err}") from err
    finally:
        if old_dc is None:
            os.environ.pop("DA_HARD_DC", None)
        else:
            os.environ["DA_HARD_DC"] = old_dc
    apply_fixups(out_dir, cfg.pragma_fixups, hls.config.get_project_name())
    return hls


def hls_project(model: keras.Model, cfg: SynthesisSection, out_dir: Path, hls4ml_backend: str):
    """The model as a written, compiled hls4ml project (a ModelGraph) for the Vivado or Vitis HLS backend.

    `compile()` (g++, about a minute) rewrites the project before it builds the emulation library, so
    the pragma fix-ups are applied again afterwards; g++ ignores HLS pragmas, the library is the same.
    """
    hls = hls_write(model, cfg, out_dir, hls4ml_backend)
    try:
        hls.compile()
    except Exception as err:
        raise FirmwareError(f"hls4ml's C++ emulation of {out_dir} did not compile: {err}") from err
    apply_fixups(Path(out_dir), cfg.pragma_fixups, hls.config.get_project_name())
    return hls
