from pathlib import Path

import numpy as np
import pytest

from hqsearch.backends import Design, estimate_backend, get_backend
from hqsearch.config.schema import DataSection, ModelSection, SynthesisSection, TrainingSection
from hqsearch.firmware.emulate import emulate, trace
from hqsearch.pipeline.data import load_dataset
from hqsearch.pipeline.model import build_model
from hqsearch.pipeline.train import calibrate, train
from hqsearch.search.space import TrialParams


def test_trained_model_firmware_is_bit_exact_and_estimated(tmp_path):
    import keras

    keras.utils.set_random_seed(0)
    data = load_dataset(DataSection())
    p = TrialParams(
        beta=1e-6, l1=0, l2=0, weights="intra", activations="intra", learning_rate=5e-3, widths=(8,), beta_start=1e-9
    )
    model = build_model(ModelSection(), p, data.input_shape, data.n_classes)
    fit = train(model, data, TrainingSection(epochs=8, beta_schedule="ramp"), p)
    assert fit.epochs == 8 and fit.final_beta is not None and fit.final_beta <= p.beta
    ebops = calibrate(model, data.x_train)
    assert ebops > 0

    comb = trace(model, SynthesisSection())
    emu = emulate(comb, model, data.x_test, data.y_test)
    assert emu.n_outputs == len(data.x_test) * 10
    assert emu.mismatches == 0 and emu.accuracy == emu.float_accuracy
    assert emu.accuracy > 0.5  # 8 epochs of an 8-unit MLP already learn digits

    cfg = SynthesisSection(latency_cutoff=2, clock_period=4.0)
    res = get_backend("estimate").synthesize(Design(model, comb, ebops), cfg, tmp_path)
    m = res.metrics
    # the cost of the RTL alkaid writes: its ternary-adder fusion saves LUTs, except for Yosys, which is
    # given the adders unfused (see `Backend.fuses_adders`)
    assert 0 < m["luts"] == m["estimated_luts"] < comb.cost
    yosys = cfg.model_copy(update={"backend": "yosys"})
    unfused = estimate_backend(yosys).synthesize(Design(model, comb, ebops), yosys, tmp_path)
    assert unfused.metrics["estimated_luts"] == pytest.approx(comb.cost)
    assert m["latency_cycles"] >= 1 and m["latency_ns"] == m["latency_cycles"] * 4.0
    assert m["ffs"] > 0 and m["dsps"] == 0
    assert set(res.sources.values()) == {"alkaid estimate"}

    comb_only = get_backend("estimate").synthesize(
        Design(model, comb, ebops), SynthesisSection(latency_cutoff=-1), tmp_path
    )
    assert comb_only.metrics["latency_cycles"] == 0 and comb_only.metrics["ffs"] == 0
    # a deeper pipeline needs more register stages than a shallow one
    deep = get_backend("estimate").synthesize(Design(model, comb, ebops), SynthesisSection(latency_cutoff=1), tmp_path)
    assert deep.metrics["latency_cycles"] > m["latency_cycles"]
    assert np.isfinite(list(m.values())).all()


def test_a_layer_left_with_constant_outputs_is_named_in_the_error():
    """A real model a high beta collapsed (tests/fixtures/models): the trial's error names the layer and
    why, where alkaid says only `StopIteration`."""
    from hqsearch.exceptions import FirmwareError
    from hqsearch.firmware.emulate import load_model

    model = load_model(Path(__file__).parent / "fixtures" / "models" / "collapsed_htru2.keras")
    with pytest.raises(
        FirmwareError, match=r"layer 'q_dense' \(QDense\) cannot be traced: every output it computes is"
    ):
        trace(model, SynthesisSection())


def test_verify_rtl_simulates_the_verilog_bit_exactly(tiny_model, tmp_path):
    import pytest

    from hqsearch.firmware.emulate import verify_rtl, verilator_problem

    if problem := verilator_problem():
        pytest.skip(problem)
    model, _, _ = tiny_model
    data = load_dataset(DataSection())
    cfg = SynthesisSection(latency_cutoff=3)
    comb = trace(model, cfg)
    assert verify_rtl(comb, cfg, tmp_path / "sim", data.x_test[:200], fuses_adders=False) == 0


def test_verify_rtl_without_a_usable_verilator_says_why(tiny_model, tmp_path, monkeypatch):
    import pytest

    from hqsearch.firmware.emulate import FirmwareError, verify_rtl

    monkeypatch.setenv("PATH", str(tmp_path))  # no verilator here
    comb = trace(tiny_model[0], SynthesisSection())
    with pytest.raises(FirmwareError, match="verify_rtl needs verilator on PATH"):
        verify_rtl(comb, SynthesisSection(), tmp_path / "sim", np.zeros((2, 64), np.float32), fuses_adders=True)


def test_conv_study_runs_through_alkaid(tmp_path):
    """The shipped conv study, shortened: QConv2D + QMaxPool2D traced by alkaid, bit-exact, estimated."""
    import yaml

    from hqsearch.config.schema import parse_config
    from hqsearch.driver import run_study
    from hqsearch.study.points import Origin, origin
    from hqsearch.study.storage import load_existing

    root = Path(__file__).parents[1]
    raw = yaml.safe_load((root / "studies" / "digits_conv.yaml").read_text())
    raw["study"].update(n_trials=1, output_dir=str(tmp_path))
    raw["training"].update(epochs=2, harvest={"max_candidates": 0})  # the final model's design only
    raw["search_space"].update(epochs=2)
    raw["execution"].update(max_concurrent=1)
    raw["synthesis"] = {"cache_dir": str(tmp_path / "cache")}
    cfg = parse_config(raw)
    assert run_study(cfg).complete == 1
    (t,) = [t for t in load_existing(cfg.study.storage_url, "digits_conv").trials if origin(t) is Origin.TRAINING]
    assert t.user_attrs["info"]["mismatches"] == 0
    assert t.user_attrs["sources"]["luts"] == "alkaid estimate" and t.values[1] > 0
    assert t.user_attrs["params"]["widths"] == [16]
