"""One training run of an HGQ2 model, and its calibration.

The beta schedule is where EBOPs pressure enters: `ramp` (the default) holds the trial's `beta_start`
for `hold` epochs, then grows beta log-linearly to the trial's beta at the last epoch (a long, slow ramp
lets HGQ remove bits while the network adapts, and the epochs on the way form the in-run front that
harvest collects), `constant` keeps the trial's beta, `pid` steers beta towards a target EBOPs with
HGQ2's `BetaPID`, starting from the trial's beta.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field

import keras
import numpy as np

from hqsearch.config.schema import TrainingSection
from hqsearch.keras_backend import one_batch
from hqsearch.pipeline.data import Dataset
from hqsearch.search.space import TrialParams
from hqsearch.search.stopping import Outlook


@dataclass(frozen=True)
class TrainResult:
    epochs: int
    final_loss: float
    val_accuracy: float | None
    training_ebops: float | None  # as logged in the last epoch; not for ranking
    final_beta: float | None
    first_val_accuracy: float | None  # after the first epoch: a continuation's is near its checkpoint's
    history: dict[str, list[float]] = field(default_factory=dict)  # Keras's per-epoch logs (loss, ebops, beta, ...)


def _optimizer(cfg: TrainingSection, lr: float) -> keras.optimizers.Optimizer:
    return {
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
        "sgd": keras.optimizers.SGD,
        "rmsprop": keras.optimizers.RMSprop,
    }[cfg.optimizer](learning_rate=lr)


def epochs_of(cfg: TrainingSection, params: TrialParams) -> int:
    return params.epochs or cfg.epochs


def beta_callbacks(cfg: TrainingSection, params: TrialParams) -> list[keras.callbacks.Callback]:
    from hgq.utils.sugar import BetaPID, BetaScheduler, PieceWiseSchedule

    beta, start = params.beta, params.beta_start
    if cfg.beta_schedule == "pid":
        assert cfg.target_ebops is not None
        return [BetaPID(cfg.target_ebops, init_beta=beta or None, warmup=cfg.pid_warmup)]
    if cfg.beta_schedule == "ramp" and start is not None and beta > 0:
        last = max(1, epochs_of(cfg, params) - 1)  # BetaScheduler counts epochs from 0
        points = [(0, start, "constant")] if params.hold else []
        points += [(min(params.hold, last - 1), start, "log"), (last, beta, "constant")]
        return [BetaScheduler(PieceWiseSchedule(points))]
    return []  # constant: beta0 was set when the layers were built


class Batches(keras.utils.PyDataset):
    """The training split, shuffled anew each epoch, in batches of one size. A smaller last batch would be a
    second shape, which XLA compiles anew (seconds, under JAX); the rows it leaves out are different ones
    each epoch. The shuffle follows NumPy's seed (`keras.utils.set_random_seed`)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int) -> None:
        super().__init__()
        self.x, self.y = x, y
        self.batch_size = min(batch_size, len(x))
        self.rng = np.random.default_rng(np.random.randint(2**31))
        self.order = self.rng.permutation(len(x))

    def __len__(self) -> int:
        return len(self.x) // self.batch_size

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        rows = self.order[i * self.batch_size : (i + 1) * self.batch_size]
        return self.x[rows], self.y[rows]

    def on_epoch_end(self) -> None:
        self.order = self.rng.permutation(len(self.x))


def train(
    model: keras.Model,
    data: Dataset,
    cfg: TrainingSection,
    params: TrialParams,
    watch: Sequence[keras.callbacks.Callback] = (),
) -> TrainResult:
    """`watch` callbacks run after HGQ2's, so they see each epoch's `ebops` and `beta` in the logs."""
    from hgq.utils.sugar import FreeEBOPs

    from hqsearch.pipeline.penalty import lifted

    base = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    optimizer = _optimizer(cfg, params.learning_rate)
    val = (data.x_val, data.y_val) if len(data.x_val) else None
    with lifted(model, base) as (loss, coefficients):
        model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy", *coefficients])
        try:
            history = model.fit(
                Batches(data.x_train, data.y_train, cfg.batch_size),
                validation_data=val,
                validation_batch_size=one_batch(len(data.x_val)),
                epochs=epochs_of(cfg, params),
                callbacks=[FreeEBOPs(), *beta_callbacks(cfg, params), *watch],
                verbose=0,
            )
        finally:  # what a saved model records: the plain loss (its regularizers are back on the variables)
            model.compile(optimizer=optimizer, loss=base, metrics=["accuracy"])
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
        # no beta callback (a constant schedule): the beta0 the layers were built with, all along
        final_beta=last("beta") if "beta" in h else float(params.beta),
        first_val_accuracy=float(h["val_accuracy"][0]) if "val_accuracy" in h else None,
        history={k: [float(v) for v in values] for k, values in h.items()},
    )


class StopWhenCollapsed(keras.callbacks.Callback):
    """Ends a training whose model has collapsed: no EBOPs left (the firmware is a constant), or validation
    accuracy fallen below `floor` (where no point counts for the front) for `patience` epochs in a row
    after it was above it. Under a ramp beta only grows or holds, so such a model does not come back, and
    the epochs it would have spent stay in the study's budget. Runs after HGQ2's callbacks (`ebops`)."""

    def __init__(self, floor: float | None, patience: int = 5) -> None:
        super().__init__()
        self.floor, self.patience = floor, patience
        self.above, self.below = False, 0
        self.reason: str | None = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        acc, ebops = logs.get("val_accuracy"), logs.get("ebops")
        if self.floor is not None and acc is not None:
            self.above = self.above or acc >= self.floor
            self.below = self.below + 1 if self.above and acc < self.floor else 0
        if ebops is not None and ebops <= 0:
            self.reason = f"no EBOPs left after epoch {epoch + 1}"
        elif self.below >= self.patience:
            self.reason = f"validation accuracy below {self.floor:g} for {self.below} epochs, to epoch {epoch + 1}"
        if self.reason is not None:
            self.model.stop_training = True


class StopWhenBehind(keras.callbacks.Callback):
    """Ends a training whose epoch lies further below the study's front than the outlook's margin. Runs
    after HGQ2's callbacks (`ebops` in the logs)."""

    def __init__(self, outlook: Outlook, epochs: int) -> None:
        super().__init__()
        self.outlook, self.epochs = outlook, epochs
        self.reason: str | None = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        acc, ebops = logs.get("val_accuracy"), logs.get("ebops")
        if acc is None or ebops is None or self.reason is not None:
            return
        if (behind := self.outlook.behind(epoch, self.epochs, float(acc), float(ebops))) is not None:
            gap, margin = behind
            self.reason = (
                f"behind the study's front after epoch {epoch + 1}: validation accuracy {acc:.4f} is {gap:.4f} "
                f"below the front at {ebops:.4g} EBOPs; no {self.outlook.kind} training closed more than "
                f"{margin:.4f} after this share of its epochs"
            )
            self.model.stop_training = True


def calibrate(model: keras.Model, x: np.ndarray, batch_size: int | None = None) -> float:
    """Fix the integer bits of WRAP activations from the data's real range (HGQ2's `trace_minmax`); returns
    the calibrated EBOPs. `trace_minmax` runs the model op by op, and on JAX each op is a program that a
    fresh trial process traces and lowers again: about 2 core-s per trial on the digits MLP. There the same
    call runs as one compiled program, with the same variables after it, bit for bit
    (`tests/test_train.py`)."""
    from hgq.utils import trace_minmax

    size = batch_size or one_batch(len(x))
    if keras.config.backend() != "jax" or not len(x):
        return float(trace_minmax(model, x, batch_size=size))
    from hgq.utils.minmax_trace import _reset_minmax  # trace_minmax's own first step

    if (traced := _CALIBRATION.get(model)) is None:  # a harvested candidate is the same model, other weights
        traced = _CALIBRATION[model] = _calibration(model)
    _reset_minmax(model)
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    for start in range(0, len(x), size):  # as trace_minmax batches it: each batch widens the ranges
        non_trainable = traced(trainable, non_trainable, x[start : start + size])
    for variable, value in zip(model.non_trainable_variables, non_trainable, strict=True):
        variable.assign(value)
    return float(sum(int(layer.ebops) for layer in model.layers if getattr(layer, "enable_ebops", False)))


_CALIBRATION: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> its compiled calibration


def _calibration(model: keras.Model):
    """One batch through `model` as `trace_minmax` runs it, as a compiled function of the variables: the
    non-trainable ones after it (the ranges seen, the EBOPs)."""
    import jax
    from hgq.utils.minmax_trace import TrainingFlagWrapper

    tracing = TrainingFlagWrapper("tracing")  # what trace_minmax passes as `training`
    held = weakref.ref(model)  # the model's entry in `_CALIBRATION` must not keep the model alive

    @jax.jit
    def traced(trainable: list, non_trainable: list, batch) -> list:
        return held().stateless_call(trainable, non_trainable, batch, training=tracing)[1]

    return traced


def saved_ebops(model: keras.Model) -> float:
    """EBOPs as stored in the model's layers: the last calibration's, for a checkpoint loaded from disk."""
    from hqsearch.firmware.emulate import quantized_layers

    return float(
        sum(float(keras.ops.convert_to_numpy(layer._ebops)) for layer in quantized_layers(model) if layer.enable_ebops)
    )
