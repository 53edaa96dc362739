"""The bitwidth penalty lifted into the loss: the same sum Keras's regularizers add, a model that keeps its
regularizers, and one compiled training step for trainings that differ only in L1 (JAX, in a child)."""

from __future__ import annotations

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from hqsearch.config.schema import DataSection, ModelSection, TrainingSection
from hqsearch.pipeline.data import load_dataset
from hqsearch.pipeline.model import build_model
from hqsearch.pipeline.penalty import lifted
from hqsearch.pipeline.train import train
from hqsearch.search.space import TrialParams

PARAMS = TrialParams(
    beta=1e-6, l1=3e-4, l2=2e-3, weights="intra", activations="intra", learning_rate=5e-3, widths=(8,), epochs=2
)


def model_and_data(params: TrialParams = PARAMS):
    keras.utils.set_random_seed(0)
    data = load_dataset(DataSection())
    return build_model(ModelSection(), params, data.input_shape, data.n_classes), data


def test_the_lifted_loss_adds_exactly_what_the_regularizers_add():
    model, data = model_and_data()
    regularized = [v for v in model.trainable_variables if v.regularizer is not None]
    assert regularized, "the trial's L1/L2 should regularize the bitwidths"
    keras_sum = float(sum(float(v.regularizer(v)) for v in regularized))
    base = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    y, y_pred = data.y_val, model(data.x_val)
    with lifted(model, base) as (loss, coefficients):
        assert all(v.regularizer is None for v in regularized) and not model.losses  # nothing counted twice
        assert len(coefficients) == 1
        added = float(loss(y, y_pred)) - float(base(y, y_pred))
    assert added == pytest.approx(keras_sum, rel=1e-5) and keras_sum > 0
    assert all(v.regularizer is not None for v in regularized)  # back on the model


def test_a_model_without_l1_l2_regularizers_trains_on_the_plain_loss():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, kernel_regularizer="l2")])
    base = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with lifted(model, base) as (loss, coefficients):
        assert loss is base and coefficients == []


def test_a_trained_model_keeps_its_regularizers_and_records_the_plain_loss(tmp_path):
    model, data = model_and_data()
    train(model, data, TrainingSection(), PARAMS)
    assert any(isinstance(v.regularizer, keras.regularizers.L1L2) for v in model.trainable_variables)
    assert model.get_compile_config()["loss"]["class_name"] == "SparseCategoricalCrossentropy"
    path = tmp_path / "m.keras"
    model.save(path)
    from hqsearch.firmware.emulate import load_model

    loaded = load_model(path)
    regs = [v.regularizer for v in loaded.trainable_variables if v.regularizer is not None]
    assert regs and all((r.l1, r.l2) == pytest.approx((3e-4, 2e-3)) for r in regs)
    np.testing.assert_array_equal(loaded.predict(data.x_val, verbose=0), model.predict(data.x_val, verbose=0))


def test_a_checkpoint_saved_in_the_middle_of_a_training_loads_and_predicts(tmp_path):
    """HGQ2's `ParetoFront` saves the model while it trains on the lifted loss (the search_quality
    benchmark's one-ramp method does this); `hqsearch import` loads such a file."""
    from hgq.utils.sugar import ParetoFront

    from hqsearch.firmware.emulate import load_model

    model, data = model_and_data()
    front = ParetoFront(tmp_path / "front", ["val_accuracy"], [1])
    train(model, data, TrainingSection(), PARAMS, watch=[front])
    saved = sorted((tmp_path / "front").glob("*.keras"))
    assert saved
    loaded = load_model(saved[-1])
    assert loaded.predict(data.x_val[:8], verbose=0).shape == (8, data.n_classes)


SHARED_STEP = """
import sys
from dataclasses import replace
from pathlib import Path
from hqsearch.keras_backend import prepare
prepare("jax", 1, Path(sys.argv[1]))
import keras
from hqsearch.config.schema import DataSection, ModelSection, TrainingSection
from hqsearch.pipeline.data import load_dataset
from hqsearch.pipeline.model import build_model
from hqsearch.search.space import TrialParams
from hqsearch.pipeline.train import train
params = TrialParams(1e-6, 1e-6, 0.0, "intra", "intra", 5e-3, (8,), epochs=2)
data = load_dataset(DataSection())
for l1 in (1e-6, 4e-6, 0.0):
    p = replace(params, l1=l1)
    train(build_model(ModelSection(), p, data.input_shape, data.n_classes), data, TrainingSection(), p)
"""


def test_trainings_that_differ_only_in_l1_zero_or_not_share_one_compiled_step_on_jax(tmp_path):
    cache = tmp_path / "xla"
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    done = subprocess.run([sys.executable, "-c", SHARED_STEP, str(cache)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    programs = [p.name.split("-")[0] for p in cache.iterdir()]
    # a coefficient written into the step as a constant would make the second training's step a second program
    assert programs.count("jit_train_step") == 1 and programs.count("jit_test_step") == 1, sorted(set(programs))
