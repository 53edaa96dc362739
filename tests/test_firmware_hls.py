"""hls4ml's C++ emulation of a trained HGQ2 model is bit-exact: the one g++ compile of the test suite.

It runs in CI as every other test does (no skip, no marker to deselect): about a minute of g++.
"""

from __future__ import annotations

import time

import pytest

from hqsearch.config import DataSection, ModelSection, SynthesisSection, TrainingSection
from hqsearch.data import load_dataset
from hqsearch.firmware import emulate, emulate_hls, trace
from hqsearch.model import build_model
from hqsearch.space import TrialParams
from hqsearch.synth.hls_project import hls_project
from hqsearch.train import calibrate, train


@pytest.mark.timeout(600)
def test_hls_project_emulation_is_bit_exact_on_a_trained_model(tmp_path):
    import keras

    keras.utils.set_random_seed(0)
    data = load_dataset(DataSection())
    p = TrialParams(beta=1e-6, l1=0, l2=0, weights="intra", activations="intra", learning_rate=5e-3, widths=(8,))
    model = build_model(ModelSection(), p, data.input_shape, data.n_classes)  # QDense(8) -> QDense(10)
    train(model, data, TrainingSection(epochs=4), p)
    calibrate(model, data.x_train)

    cfg = SynthesisSection(backend="vivado", strategy="latency", pragma_fixups=["inline_recursive"])
    t0 = time.perf_counter()
    hls = hls_project(model, cfg, tmp_path / "hls4ml_prj")
    seconds = time.perf_counter() - t0
    emu = emulate_hls(hls, model, data.x_test, data.y_test)

    assert emu.n_outputs == len(data.x_test) * 10
    assert emu.mismatches == 0
    assert emu.accuracy == emu.float_accuracy > 0.5
    # the same numbers as alkaid's emulation of the same model
    assert emu == emulate(trace(model, cfg), model, data.x_test, data.y_test)
    # compile() rewrote the project; the fix-up is back in the sources the build will read
    top = (tmp_path / "hls4ml_prj" / "firmware" / "myproject.cpp").read_text()
    assert top.count("#pragma HLS INLINE RECURSIVE") == 1
    print(f"hls_project (write + g++ compile): {seconds:.0f} s")
