"""Points of a study that are not trainings: harvested epochs and imported checkpoints.

Each is an Optuna trial of its own (`study.add_trial`), COMPLETE with its measured values, so
`study.best_trials`, the dashboard, `optuna best-trials` and the sampler all see it. `origin` says what
a trial is; `n_trials` counts trainings only. A harvested point carries its parent's parameters (the
sampler learns that those parameters reach it) and `parent`, `epoch` and `beta`; an imported one
carries `source`, the file it came from.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

ORIGIN_ATTR = "origin"
PARENT_ATTR = "parent"
EPOCH_ATTR = "epoch"
BETA_ATTR = "beta"
SOURCE_ATTR = "source"  # an imported point's file
SHA_ATTR = "source_sha256"  # and its content, so the same file is not imported twice
MODEL_ARTIFACT_ATTR = "model_artifact"  # artifact id of the point's model (on the parent for harvested ones)


class Origin(StrEnum):
    TRAINING = "training"
    HARVEST = "harvest"
    IMPORT = "import"


def origin(t: FrozenTrial) -> Origin:
    return Origin(t.user_attrs.get(ORIGIN_ATTR, Origin.TRAINING))


def count_trainings(study: optuna.Study, state: TrialState) -> int:
    return sum(origin(t) is Origin.TRAINING for t in study.get_trials(deepcopy=False, states=(state,)))


def add_point(
    study: optuna.Study,
    values: list[float],
    user_attrs: dict[str, Any],
    constraints: dict[str, float],
    params: dict[str, Any] | None = None,
    distributions: dict[str, BaseDistribution] | None = None,
) -> None:
    """One measured point as a COMPLETE trial; `user_attrs` must name its `origin`."""
    assert ORIGIN_ATTR in user_attrs
    study.add_trial(
        optuna.trial.create_trial(
            values=values,
            params=params or {},
            distributions=distributions or {},
            user_attrs=user_attrs,
            constraints=constraints or None,
        )
    )
