"""Which points stand on a study's front: one rule for every view of it.

A point stands on the *measured front* when it is COMPLETE, meets every constraint, was measured by the
study's backend (not told with alkaid's estimate in place of a synthesis, see `fidelity`), and no other
such point dominates it. A design told with its estimate carries the constraint `unmeasured` = 1, so
Optuna itself calls it infeasible: `study.best_trials`, `optuna best-trials` and the dashboard show the
measured front by construction, and when such a design is measured later, its measurement (a point
with `origin: synthesis`) is what stands, never the estimate it replaces. The report, its hypervolume,
`status` and the driver's ledger take the front from `measured_front` / `stands`, which also read
studies written before the constraint existed.

The search looks further ahead (`meets_constraints(..., estimates=True)`): while designs wait for
their measurement, the continuation policy takes their estimates as they were told, until a
measurement replaces one.

Dominance is one relation everywhere: `a` dominates `b` when it is at least as good in every objective
and better in one. Ties dominate neither, so tied points stand together.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from hqsearch.study.attrs import SKIPPED_ATTR_KEY, UNMEASURED, info_of

if TYPE_CHECKING:  # the gate uses this module on workers that need no Optuna
    from optuna.trial import FrozenTrial

    from hqsearch.config.schema import StudySection


def is_skipped(t: FrozenTrial) -> bool:
    """Told with alkaid's estimate: the backend did not measure it."""
    return bool(info_of(t.user_attrs).get(SKIPPED_ATTR_KEY))


def constraint_values(study: StudySection, metrics: dict[str, float], info: dict) -> dict[str, float]:
    """What a point is told with: the study's constraints, and `unmeasured` when its `info` says the
    backend skipped it (told with its estimate)."""
    return {**study.constraint_values(metrics), **({UNMEASURED: 1.0} if info.get(SKIPPED_ATTR_KEY) else {})}


def meets_constraints(constraints: Mapping[str, float], estimates: bool = False) -> bool:
    """Every constraint value <= 0, as Optuna judges feasibility; with `estimates`, a design told with its
    estimate counts as it was told (what the search may build on before it is measured)."""
    return all(v <= 0 for k, v in constraints.items() if not (estimates and k == UNMEASURED))


def stands(t: FrozenTrial) -> bool:
    """May stand on the measured front: COMPLETE, every constraint met, and measured (studies written
    before the `unmeasured` constraint are read by their `synth_skipped` reason)."""
    from optuna.trial import TrialState

    return t.state == TrialState.COMPLETE and meets_constraints(t.constraints) and not is_skipped(t)


def signed(values: np.ndarray | Sequence[float], maximise: Sequence[bool]) -> np.ndarray:
    """Values turned so that larger is better in every column."""
    return np.where(np.array(maximise, dtype=bool), 1.0, -1.0) * np.asarray(values, dtype=float)


def dominates(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether signed `a` dominates signed `b`, row by row (either side may be one row, broadcast)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return np.all(a >= b, axis=-1) & np.any(a > b, axis=-1)


def covers(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether signed `a` is at least as good as signed `b` in every column: it dominates `b` or ties with it."""
    return np.all(np.asarray(a, dtype=float) >= np.asarray(b, dtype=float), axis=-1)


def nondominated(values: np.ndarray, maximise: Sequence[bool]) -> np.ndarray:
    """The rows no other row dominates (ties kept)."""
    v = signed(np.asarray(values, dtype=float).reshape(-1, len(maximise)), maximise)
    return np.array([not dominates(v, row).any() for row in v], dtype=bool)


class Front:
    """The rows no other row dominates (ties kept), kept one row at a time, each with what it stands for:
    `nondominated` over every row seen so far, without looking at them all again. With `ties=False` a row
    that ties one already kept adds nothing and is not kept (a training's in-run front)."""

    def __init__(self, maximise: Sequence[bool], ties: bool = True) -> None:
        self.maximise = tuple(maximise)
        self._beaten = dominates if ties else covers
        self.values = np.empty((0, len(self.maximise)))  # signed: larger is better
        self.items: list = []

    def __len__(self) -> int:
        return len(self.items)

    def add(self, row: Sequence[float], item: object) -> bool:
        """Whether the row joined the front (rows it dominates leave it)."""
        v = signed(row, self.maximise)
        if self._beaten(self.values, v).any():
            return False
        keep = ~self._beaten(v, self.values)
        self.values = np.vstack([self.values[keep], v])
        self.items = [it for it, k in zip(self.items, keep, strict=True) if k] + [item]
        return True


def measured_front(trials: Iterable[FrozenTrial], maximise: Sequence[bool]) -> list[FrozenTrial]:
    """The points that stand on the measured front, in trial order: `study.best_trials` for a study
    whose every skipped design carries the `unmeasured` constraint."""
    standing = [t for t in trials if stands(t)]
    if not standing:
        return []
    mask = nondominated(np.array([t.values for t in standing], dtype=float), maximise)
    return [t for t, on in zip(standing, mask, strict=True) if on]
