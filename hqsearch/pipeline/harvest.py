"""A training's in-run front: the epochs that are non-dominated in (validation accuracy, EBOPs).

HGQ's authors take a whole front from one training with HGQ2's `ParetoFront` callback, which writes a
checkpoint file at every improving epoch. `InRunFront` keeps the same front in memory (weights only),
so a trial pays no disk traffic per epoch; `thin` then picks the few candidates worth converting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
import numpy as np

from hqsearch.search.front import Front


@dataclass
class Checkpoint:
    epoch: int  # 1-based, as Keras prints it
    val_accuracy: float
    ebops: float  # as logged in training (before calibration): HGQ's own selection signal
    beta: float | None
    weights: list[np.ndarray]


class InRunFront(keras.callbacks.Callback):
    """Keeps every epoch not dominated in (val_accuracy max, ebops min); dominated ones, and ties that add
    nothing, are dropped at once."""

    def __init__(self) -> None:
        super().__init__()
        self._front = Front((True, False), ties=False)

    @property
    def front(self) -> list[Checkpoint]:
        return self._front.items

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        acc, ebops = logs.get("val_accuracy"), logs.get("ebops")
        if acc is None or ebops is None or not (math.isfinite(acc) and math.isfinite(ebops)):
            return
        beta = logs.get("beta")
        new = Checkpoint(epoch + 1, float(acc), float(ebops), None if beta is None else float(beta), [])
        if self._front.add((new.val_accuracy, new.ebops), new):
            new.weights = [np.array(w, copy=True) for w in self.model.get_weights()]


def thin(front: list[Checkpoint], k: int, exclude_epoch: int | None = None) -> list[Checkpoint]:
    """At most `k` checkpoints spread evenly along log EBOPs, the most accurate and the cheapest always
    among them; `exclude_epoch` (the final one, which is the trial itself) is never a candidate."""
    pool = sorted((c for c in front if c.epoch != exclude_epoch), key=lambda c: c.ebops)
    if k <= 0 or not pool:
        return []
    if len(pool) <= k:
        return pool
    logs = np.log(np.maximum([c.ebops for c in pool], 1e-12))
    targets = np.linspace(logs[0], logs[-1], k)
    chosen: list[int] = []
    for t in targets:  # nearest unused checkpoint to each target
        order = np.argsort(np.abs(logs - t), kind="stable")
        chosen.append(next(int(i) for i in order if int(i) not in chosen))
    return [pool[i] for i in sorted(chosen)]
