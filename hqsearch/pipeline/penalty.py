"""The L1/L2 penalty on bitwidths as a term of the training loss, its coefficients inputs of the step.

HGQ2 takes the penalty as Keras regularizers on the bitwidth variables (`quantizer_scopes` sets them).
Keras writes a regularizer's coefficient into the compiled training step as a constant, so under JAX
every L1 value of a study was a new XLA program: seconds of compilation per training, and a miss in
the persistent compilation cache. For the length of a training, `lifted` takes the `L1L2` regularizers
off the variables and adds the same sum to the loss, reading the coefficients from variables that Keras
passes into the step with the metrics' state; trainings that differ only in L1 or L2 then share one
program. The model keeps its regularizers in its config, so a saved model says how it was trained.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import keras
from keras import ops


class Coefficients(keras.metrics.Metric):
    """Constants of the loss, kept as metric state because Keras hands metric variables to the compiled
    train and test steps as inputs. Not accumulators (a new epoch does not reset them), and they add
    nothing to the logs."""

    def __init__(self, values: list[float]) -> None:
        super().__init__(name="penalty_coefficients")
        self.values = [
            self.add_variable(shape=(), initializer=keras.initializers.Constant(v), name=f"c{i}")
            for i, v in enumerate(values)
        ]

    def update_state(self, *args, **kwargs) -> None:
        pass

    def reset_state(self) -> None:
        pass

    def result(self) -> dict:
        return {}


class Penalised(keras.losses.Loss):
    """`base` per sample, plus the penalty, which the loss's mean then carries once: exactly the sum Keras
    adds for the regularizers (`l1 * sum(|v|) + l2 * sum(v**2)` over each regularized variable)."""

    def __init__(self, base: keras.losses.Loss, groups: list[list], coefficients: Coefficients) -> None:
        super().__init__(name=base.name, reduction=base.reduction, dtype=base.dtype)
        self.base, self.groups, self.coefficients = base, groups, coefficients

    def call(self, y_true, y_pred):
        c = self.coefficients.values
        total = 0.0
        for g, variables in enumerate(self.groups):
            total += c[2 * g] * sum(ops.sum(ops.absolute(v)) for v in variables)
            total += c[2 * g + 1] * sum(ops.sum(ops.square(v)) for v in variables)
        return self.base.call(y_true, y_pred) + ops.cast(total, self.base.dtype)


@contextmanager
def lifted(model: keras.Model, base: keras.losses.Loss) -> Iterator[tuple[keras.losses.Loss, list]]:
    """(the loss to compile with, the metrics to compile it with) while the model's `L1L2` regularizers are
    off its variables; they are back when the block ends. A model without such regularizers trains on
    `base` unchanged."""
    l1l2 = keras.regularizers.L1L2
    taken = [(v, v.regularizer) for v in model.trainable_variables if isinstance(v.regularizer, l1l2)]
    if not taken:
        yield base, []
        return
    keys: dict[tuple[float, float], list] = {}
    for v, reg in taken:  # one pair of coefficients per distinct regularizer setting
        keys.setdefault((float(reg.l1), float(reg.l2)), []).append(v)
    coefficients = Coefficients([c for key in keys for c in key])
    try:
        for v, _ in taken:
            v.regularizer = None
        yield Penalised(base, list(keys.values()), coefficients), [coefficients]
    finally:
        for v, reg in taken:
            v.regularizer = reg
