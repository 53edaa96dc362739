"""Firmware from a calibrated HGQ2 model, and its accuracy measured on the bit-exact emulation.

da4ml traces the model into distributed-arithmetic adder logic (`CombLogic`); its `predict` runs that
logic bit-exactly, so the accuracy reported is the accuracy the FPGA will have, not the float model's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from .config import SynthesisSection


@dataclass(frozen=True)
class Emulation:
    accuracy: float  # firmware (bit-exact) on the test split
    float_accuracy: float  # the Keras model on the same samples
    mismatches: int  # output values where firmware and Keras differ, at Keras's float32 precision
    n_outputs: int


def trace(model: keras.Model, cfg: SynthesisSection):
    """The model as combinational logic (`da4ml.types.CombLogic`)."""
    from da4ml.converter import trace_model
    from da4ml.trace import HWConfig, comb_trace

    inp, out = trace_model(model, HWConfig(1, -1, -1), {"hard_dc": cfg.hard_dc})
    return comb_trace(inp, out)


def emulate(comb, model: keras.Model, x: np.ndarray, y: np.ndarray) -> Emulation:
    fw = np.asarray(comb.predict(x)).reshape(len(x), -1)
    ref = np.asarray(model.predict(x, verbose=0, batch_size=4096)).reshape(len(x), -1)
    return Emulation(
        accuracy=float((fw.argmax(axis=1) == y).mean()),
        float_accuracy=float((ref.argmax(axis=1) == y).mean()),
        # Keras computes in float32: a firmware output with more significant bits than float32 holds
        # is compared after the same rounding, so only real logic differences count
        mismatches=int((fw.astype(ref.dtype) != ref).sum()),
        n_outputs=int(fw.size),
    )


def write_rtl(comb, cfg: SynthesisSection, out_dir: Path, name: str = "model") -> Path:
    """da4ml's Verilog project for the design, pipelined at the configured latency cutoff."""
    from da4ml.codegen import RTLModel

    rtl = RTLModel(
        comb,
        name,
        out_dir,
        flavor="verilog",
        latency_cutoff=cfg.latency_cutoff,
        clock_period=cfg.clock_period,
        part_name=cfg.part,
        print_latency=False,
    )
    rtl.write()
    return out_dir
