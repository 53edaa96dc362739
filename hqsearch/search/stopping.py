"""Stopping a training that can no longer reach the study's front.

Optuna prunes single-objective studies only. Here a training is told, as it starts, the study's front in
the terms a training sees each epoch (the Keras model's validation accuracy against the EBOPs it logs:
what harvest watches) and a margin learned from the study's finished trainings of its kind (fresh or
continued): per share of a training's epochs, the most any of them still closed of its gap to that
front afterwards. A training further behind than that is stopped at the epoch's end: what it found so
far is harvested as usual, and the epochs it did not train stay in the study's budget.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BINS = 20  # the margin is learned per twentieth of a training's epochs


def curve(history: dict[str, list[float]]) -> dict[str, list[float]] | None:
    """What a training records of its epochs for later trainings to learn from (None without a validation
    split or EBOPs)."""
    acc, ebops = history.get("val_accuracy"), history.get("ebops")
    if not acc or not ebops or len(acc) != len(ebops):
        return None
    return {"val_accuracy": [round(a, 5) for a in acc], "ebops": [float(f"{e:.5g}") for e in ebops]}


@dataclass(frozen=True)
class Staircase:
    """The best validation accuracy reached at or below each EBOPs count, over the study's points."""

    ebops: tuple[float, ...]  # ascending
    accuracy: tuple[float, ...]  # the best accuracy at or below each; non-decreasing

    @classmethod
    def of(cls, points: list[tuple[float, float]]) -> Staircase:
        """From (val accuracy, EBOPs) points."""
        if not points:
            return cls((), ())
        acc, ebops = np.array(points, dtype=float).T
        order = np.argsort(ebops, kind="stable")
        return cls(tuple(ebops[order].tolist()), tuple(np.maximum.accumulate(acc[order]).tolist()))

    def gap(self, accuracy: np.ndarray, ebops: np.ndarray) -> np.ndarray:
        """How far below the front each (accuracy, EBOPs) lies: 0 on it, above it, or cheaper than all of it."""
        i = np.searchsorted(np.array(self.ebops), np.asarray(ebops, dtype=float), side="right") - 1
        best = np.where(i >= 0, np.array((-np.inf, *self.accuracy))[i + 1], -np.inf)
        return np.maximum(best - np.asarray(accuracy, dtype=float), 0.0)


def closed_after(gaps: np.ndarray) -> np.ndarray:
    """Per epoch, how much of its gap a training still closed afterwards (the last epoch: none)."""
    later_best = np.minimum.accumulate(gaps[::-1])[::-1]  # the smallest gap from each epoch on
    closed = np.zeros_like(gaps)
    closed[:-1] = gaps[:-1] - later_best[1:]
    return np.maximum(closed, 0.0)


def share_bin(epoch: int, epochs: int) -> int:
    """The twentieth of a training's `epochs` that its 0-based `epoch` falls in."""
    return min(BINS - 1, epoch * BINS // max(epochs, 1))


@dataclass(frozen=True)
class Outlook:
    """What a training is told as it starts: the front, and how far behind it a training may still be."""

    front: Staircase
    margin: tuple[float, ...]  # per share bin; inf where too few trainings have taught it
    kind: str  # "fresh" or "continued": whose trainings taught the margin

    def behind(self, epoch: int, epochs: int, accuracy: float, ebops: float) -> tuple[float, float] | None:
        """(gap, margin) when the training at 0-based `epoch` of `epochs` is further behind than the margin."""
        if epoch + 1 >= epochs:
            return None  # its last epoch: nothing left to save
        gap = float(self.front.gap(np.array([accuracy]), np.array([ebops]))[0])
        margin = self.margin[share_bin(epoch, epochs)]
        return (gap, margin) if gap > margin else None


def learn(points: list[tuple[float, float]], curves: list[dict[str, list[float]]], kind: str, least: int) -> Outlook:
    """The outlook from the study's (val accuracy, EBOPs) points and its finished trainings' `curve`s of one
    kind: per share bin, the most any of them closed of its gap after an epoch in it, where at least
    `least` trainings had an epoch there."""
    front = Staircase.of(points)
    most, seen = np.zeros(BINS), np.zeros(BINS, dtype=int)
    for c in curves:
        acc, ebops = np.array(c["val_accuracy"]), np.array(c["ebops"])
        closed = closed_after(front.gap(acc, ebops))
        bins = np.array([share_bin(e, len(acc)) for e in range(len(acc))])
        for b in np.unique(bins):
            most[b] = max(most[b], closed[bins == b].max())
            seen[b] += 1
    margin = np.where(seen >= least, most, np.inf)
    return Outlook(front, tuple(margin.tolist()), kind)
