"""Firmware from a calibrated HGQ2 model, and its accuracy measured on the bit-exact emulation.

alkaid (da4ml's successor) traces the model into distributed-arithmetic adder logic (`CombLogic`); its
`predict` runs that logic bit-exactly, so the accuracy reported is the accuracy the FPGA will have,
not the float model's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hqsearch.config.schema import SynthesisSection
from hqsearch.exceptions import FirmwareError

if TYPE_CHECKING:  # Keras (and its backend) load only where a model is really handled
    import keras


@dataclass(frozen=True)
class Emulation:
    accuracy: float  # firmware (bit-exact) on the samples given
    float_accuracy: float  # the Keras model on the same samples
    mismatches: int  # output values where firmware and Keras differ, at Keras's float32 precision
    n_outputs: int


def load_model(path: Path) -> keras.Model:
    """A saved HGQ2 model; importing hgq registers its layers with Keras first. Its training setup is not
    loaded (`compile=False`): hqsearch needs the layers and weights, and a checkpoint saved in the middle
    of a training (HGQ2's `ParetoFront`, a user's own callback) names the loss it was compiled with,
    which may be a class this process does not have (hqsearch's `penalty.Penalised`, a user's own)."""
    import hgq  # noqa: F401
    import keras

    return keras.models.load_model(path, compile=False)


def quantized_layers(model: keras.Model) -> list:
    """The model's HGQ2 layers: what alkaid and hls4ml turn into bit-exact firmware."""
    from hgq.layers import QLayerBase

    return [layer for layer in model._flatten_layers() if isinstance(layer, QLayerBase)]


def trace(model: keras.Model, cfg: SynthesisSection):
    """The model as combinational logic (`alkaid.types.CombLogic`), traced by alkaid's Keras tracer with
    HGQ2's layers (HGQ2 registers them as an `alkaid_keras` plugin)."""
    from alkaid.converter import trace_model
    from alkaid.trace import HWConfig
    from alkaid.trace import trace as comb_trace

    if not quantized_layers(model):
        raise FirmwareError(f"model {model.name!r} has no HGQ2 quantized layers (hgq.layers.Q*): nothing to trace")
    # the hardware config as da4ml had it (alkaid's default is HWConfig(1, 1, -1))
    args = (model, HWConfig(1, -1, -1), {"hard_dc": cfg.hard_dc})
    try:
        inp, out = trace_model(*args, framework="keras")
    # no mirror for the layer, not its config, or (alkaid 0.8: StopIteration) a tensor with no variable left in it
    except (KeyError, AssertionError, NotImplementedError, StopIteration) as err:
        if isinstance(err, KeyError) and not (err.args and isinstance(err.args[0], type)):
            raise  # a KeyError that is not a missing layer class: a bug, shown as one
        name, cls = _failing_layer(trace_model, args)
        why = "alkaid traces HGQ2 layers and the few Keras layers HGQ2 registers; use the HGQ2 equivalent"
        if isinstance(err, StopIteration):
            why = (
                "every output it computes is a constant (its weights or inputs quantised away, as a high beta "
                "does), which alkaid does not trace"
            )
        elif isinstance(err, AssertionError | NotImplementedError) and str(err):
            why = f"{str(err).rstrip('.')}; {why}"
        raise FirmwareError(f"layer {name!r} ({cls}) cannot be traced: {why}") from None
    return comb_trace(inp, out)


def _failing_layer(trace_model, args: tuple) -> tuple[str, str]:
    """(name, class) of the layer alkaid's tracer stopped at: the last it names when tracing verbosely."""
    import contextlib
    import io
    import re

    said = io.StringIO()
    with contextlib.suppress(Exception), contextlib.redirect_stdout(said):
        trace_model(*args, framework="keras", verbose=True)
    found = re.findall(r"^\s*(\S+) \((\w+)\)", said.getvalue(), re.MULTILINE)
    return found[-1] if found else ("?", "?")


def emulate(comb, model: keras.Model, x: np.ndarray, y: np.ndarray) -> Emulation:
    return score(np.asarray(comb.predict(x)), model, x, y)


def score(firmware_out: np.ndarray, model: keras.Model, x: np.ndarray, y: np.ndarray) -> Emulation:
    """Accuracy of firmware outputs next to the Keras model's, and where the two differ."""
    from hqsearch.keras_backend import one_batch

    fw = firmware_out.reshape(len(x), -1)
    ref = np.asarray(model.predict(x, verbose=0, batch_size=one_batch(len(x)))).reshape(len(x), -1)
    return Emulation(
        accuracy=float((fw.argmax(axis=1) == y).mean()),
        float_accuracy=float((ref.argmax(axis=1) == y).mean()),
        # Keras computes in float32: a firmware output with more significant bits than float32 holds
        # is compared after the same rounding, so only real logic differences count
        mismatches=int((fw.astype(ref.dtype) != ref).sum()),
        n_outputs=int(fw.size),
    )


def emulate_hls(hls_model, model: keras.Model, x: np.ndarray, y: np.ndarray) -> Emulation:
    """Accuracy of the compiled hls4ml project (bit-exact C++ emulation) next to the Keras model's."""
    # double in, double out: no float32 rounding inside the bridge; the comparison rounds as `emulate` does
    return score(np.asarray(hls_model.predict(np.ascontiguousarray(x, dtype=np.float64))), model, x, y)


def verilator_problem() -> str | None:
    """Why Verilator cannot simulate alkaid's RTL here, or None when it can.

    alkaid's binder links `obj_dir/libverilated.a`, which `verilator --build` makes only in releases
    whose verilated.mk has that target (Debian bookworm's 5.006 has not).
    """
    import re
    import shutil
    import subprocess

    if shutil.which("verilator") is None:
        return "synthesis.verify_rtl needs verilator on PATH"
    out = subprocess.run(["verilator", "-V"], capture_output=True, text=True).stdout
    roots = [r for r in re.findall(r"VERILATOR_ROOT\s*=\s*(\S*)", out) if r]
    mk = Path(roots[0]) / "include" / "verilated.mk" if roots else None
    if mk is None or "libverilated.a" not in mk.read_text(errors="replace"):
        version = out.splitlines()[0] if out else "unknown version"
        return f"synthesis.verify_rtl needs a Verilator that builds libverilated.a (found {version})"
    return None


def verify_rtl(comb, cfg: SynthesisSection, out_dir: Path, x: np.ndarray, *, fuses_adders: bool) -> int:
    """Simulate the written Verilog with Verilator on `x`; returns the outputs that differ from alkaid's emulation.

    alkaid's emulation runs the traced logic; this runs the RTL text that synthesis will read, so it also
    catches a code-generation fault. Needs `verilator` and a C++ compiler on PATH.
    """
    if problem := verilator_problem():
        raise FirmwareError(problem)
    from hqsearch.firmware.rtl import rtl_model

    rtl = rtl_model(comb, cfg, out_dir, fuses_adders=fuses_adders)
    try:
        rtl.compile(nproc=1)
    except RuntimeError as err:
        raise FirmwareError(f"verify_rtl: Verilator build failed: {str(err)[-2000:]}") from None
    sim = np.asarray(rtl.predict(x)).reshape(len(x), -1)
    ref = np.asarray(comb.predict(x)).reshape(len(x), -1)
    return int((sim != ref).sum())
