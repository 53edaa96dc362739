"""beta schedules as HGQ2 callbacks, in real training runs."""

import json
from dataclasses import replace

import keras
import pytest
from conftest import COMPILE_CACHE
from helpers import run_on_jax

from hqsearch.config.schema import DataSection, ModelSection, TrainingSection
from hqsearch.pipeline.data import load_dataset
from hqsearch.pipeline.model import build_model
from hqsearch.pipeline.train import StopWhenCollapsed, train
from hqsearch.search.space import TrialParams

PARAMS = TrialParams(beta=1e-6, l1=0, l2=0, weights="intra", activations="intra", learning_rate=5e-3, widths=(8,))


def fit(training: TrainingSection, params: TrialParams = PARAMS, watch=()):
    keras.utils.set_random_seed(0)
    data = load_dataset(DataSection())
    model = build_model(ModelSection(), params, data.input_shape, data.n_classes)
    return train(model, data, training, params, watch=watch)


def test_ramp_holds_then_ramps_to_the_trials_beta_at_the_last_epoch():
    params = replace(PARAMS, beta=1e-4, beta_start=1e-6, hold=2, epochs=6)
    betas = BetaLog()
    result = fit(TrainingSection(epochs=30), params, [betas])
    assert result.epochs == 6  # the trial's length, not training.epochs
    assert betas.seen[:3] == pytest.approx([1e-6, 1e-6, 1e-6])  # held for 2 epochs, then ramped from there
    assert betas.seen[-1] == pytest.approx(1e-4) and betas.seen == sorted(betas.seen)


def test_a_collapsed_training_stops_early():
    def run(logs: list[dict]) -> tuple[int | None, str | None]:
        stop = StopWhenCollapsed(floor=0.8, patience=2)
        stop.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
        for epoch, log in enumerate(logs):
            stop.on_epoch_end(epoch, log)
            if getattr(stop.model, "stop_training", False):
                return epoch + 1, stop.reason
        return None, stop.reason

    # a slow start under the floor is no collapse; falling under it after being above is, after `patience`
    assert run([{"val_accuracy": a, "ebops": 100} for a in (0.3, 0.5, 0.7, 0.9, 0.95)]) == (None, None)
    stopped, reason = run([{"val_accuracy": a, "ebops": 100} for a in (0.5, 0.9, 0.7, 0.85, 0.6, 0.5, 0.9)])
    assert stopped == 6 and "below 0.8 for 2 epochs" in reason
    stopped, reason = run([{"val_accuracy": 0.9, "ebops": 50}, {"val_accuracy": 0.9, "ebops": 0.0}])
    assert stopped == 2 and "no EBOPs left" in reason  # the firmware is a constant


class BetaLog(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seen = []

    def on_epoch_end(self, epoch, logs=None):
        self.seen.append(float(logs["beta"]))


def test_pid_schedule_moves_beta_after_its_warmup():
    # BetaPID (HGQ2) takes over from the trial's beta after the warmup and moves it every epoch
    result = fit(TrainingSection(epochs=6, beta_schedule="pid", target_ebops=50.0, pid_warmup=1))
    assert result.epochs == 6 and result.final_beta is not None
    assert abs(result.final_beta - PARAMS.beta) / PARAMS.beta > 0.01
    held = fit(TrainingSection(epochs=3, beta_schedule="pid", target_ebops=50.0, pid_warmup=5))
    assert held.final_beta == PARAMS.beta  # still warming up: the trial's own beta


def test_constant_schedule_keeps_beta():
    result = fit(TrainingSection(epochs=2))
    assert result.final_beta == pytest.approx(PARAMS.beta, rel=1e-6)  # recorded, and the trial's own beta


CALIBRATE_ON_JAX = """
import json
import sys
from pathlib import Path

import keras, numpy as np
from hgq.utils import trace_minmax
from hqsearch.config.schema import DataSection, ModelSection
from hqsearch.pipeline.data import load_dataset
from hqsearch.pipeline.model import build_model
from hqsearch.pipeline.train import calibrate
from hqsearch.keras_backend import prepare
from hqsearch.search.space import TrialParams

prepare("jax", 2, Path(sys.argv[2]))  # as a trial: the programs the suite's trials compiled, loaded
flat, images = load_dataset(DataSection()), load_dataset(DataSection(image_shape=[8, 8, 1]))
out = []
for kind, weights, activations, batch in json.loads(sys.argv[1]):
    keras.utils.set_random_seed(0)
    data = images if kind == "conv" else flat
    p = TrialParams(
        beta=1e-5, l1=0, l2=0, weights=weights, activations=activations, learning_rate=5e-3, widths=(8,)
    )
    model = build_model(ModelSection(kind=kind, filters=[2]), p, data.input_shape, data.n_classes)
    x = data.x_train[:160]  # ten batches where a case gives a batch size of 16
    before = model.get_weights()
    want = trace_minmax(model, x, batch_size=batch or len(x))
    wanted = model.get_weights()
    model.set_weights(before)
    got = calibrate(model, x, batch_size=batch)
    same = [bool(np.array_equal(a, b)) for a, b in zip(wanted, model.get_weights(), strict=True)]
    changed = sum(not np.array_equal(a, b) for a, b in zip(before, wanted, strict=True))
    out.append([want, got, all(same), changed])
print(json.dumps(out))
"""


def test_calibration_on_jax_leaves_every_variable_as_hgq2s_trace_minmax_does():
    """On JAX `calibrate` runs HGQ2's `trace_minmax` as one compiled program instead of op by op: the same
    EBOPs and the same variables, bit for bit, for dense and conv layers at their initial weights, and a split
    taken in many batches (the first of which sees too little to fix the conv model's ranges)."""
    cases = [["mlp", "per_channel", "inter", None], ["conv", "intra", "intra", 16]]
    printed = run_on_jax(CALIBRATE_ON_JAX, json.dumps(cases), str(COMPILE_CACHE))
    results = json.loads(printed.strip().splitlines()[-1])
    for case, (want, got, same, changed) in zip(cases, results, strict=True):
        assert changed > 0, f"{case}: calibration changed no variable: nothing was compared"
        assert got == want and same, f"{case}: EBOPs {got} vs trace_minmax's {want}, variables equal: {same}"
