"""One training run of an HGQ2 model, and its calibration.

The beta schedule is where EBOPs pressure enters: `ramp` (the default) grows it log-linearly up to the
trial's beta (a gentle start keeps accuracy, and the epochs on the way form the in-run front that
harvest collects), `constant` keeps the trial's beta, `pid` steers beta towards a
target EBOPs with HGQ2's `BetaPID`, starting from the trial's beta.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import keras
import numpy as np

from .config import TrainingSection
from .data import Dataset
from .space import TrialParams


@dataclass(frozen=True)
class TrainResult:
    epochs: int
    final_loss: float
    val_accuracy: float | None
    training_ebops: float | None  # as logged in the last epoch; not for ranking
    final_beta: float | None


def _optimizer(cfg: TrainingSection, lr: float) -> keras.optimizers.Optimizer:
    return {
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
        "sgd": keras.optimizers.SGD,
        "rmsprop": keras.optimizers.RMSprop,
    }[cfg.optimizer](learning_rate=lr)


def beta_callbacks(cfg: TrainingSection, beta: float) -> list[keras.callbacks.Callback]:
    from hgq.utils.sugar import BetaPID, BetaScheduler, PieceWiseSchedule

    if cfg.beta_schedule == "pid":
        assert cfg.target_ebops is not None
        return [BetaPID(cfg.target_ebops, init_beta=beta or None, warmup=cfg.pid_warmup)]
    if cfg.beta_schedule == "ramp" and beta > 0:
        ramp_end = cfg.ramp_epochs or max(1, int(cfg.epochs * 0.8))
        schedule = PieceWiseSchedule([(0, beta * cfg.ramp_from, "log"), (ramp_end, beta, "constant")])
        return [BetaScheduler(schedule)]
    return []  # constant: beta0 was set when the layers were built


def train(
    model: keras.Model,
    data: Dataset,
    cfg: TrainingSection,
    params: TrialParams,
    watch: Sequence[keras.callbacks.Callback] = (),
) -> TrainResult:
    """`watch` callbacks run after HGQ2's, so they see each epoch's `ebops` and `beta` in the logs."""
    from hgq.utils.sugar import FreeEBOPs

    model.compile(
        optimizer=_optimizer(cfg, params.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    val = (data.x_val, data.y_val) if len(data.x_val) else None
    history = model.fit(
        data.x_train,
        data.y_train,
        validation_data=val,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        callbacks=[FreeEBOPs(), *beta_callbacks(cfg, params.beta), *watch],
        verbose=0,
    )
    h = history.history
    loss = float(h["loss"][-1])
    if not np.isfinite(loss):
        raise FloatingPointError(f"training diverged: final loss is {loss}")
    last = lambda key: float(h[key][-1]) if key in h else None  # noqa: E731
    return TrainResult(
        epochs=len(h["loss"]),
        final_loss=loss,
        val_accuracy=last("val_accuracy"),
        training_ebops=last("ebops"),
        final_beta=last("beta"),
    )


def calibrate(model: keras.Model, x: np.ndarray, batch_size: int = 1024) -> float:
    """Fix the integer bits of WRAP activations from the data's real range; returns calibrated EBOPs."""
    from hgq.utils import trace_minmax

    return float(trace_minmax(model, x, batch_size=batch_size))


def saved_ebops(model: keras.Model) -> float:
    """EBOPs as stored in the model's layers: the last calibration's, for a checkpoint loaded from disk."""
    from .model import quantized_layers

    return float(
        sum(float(keras.ops.convert_to_numpy(layer._ebops)) for layer in quantized_layers(model) if layer.enable_ebops)
    )
