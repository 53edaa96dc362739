"""Points of a study that are not trainings: harvested epochs and imported checkpoints.

Each is an Optuna trial of its own (`study.add_trial`), COMPLETE with its measured values, so
`study.best_trials`, the dashboard, `optuna best-trials` and the sampler all see it. `origin` says what
a trial is; `n_trials` counts trainings only. A harvested point carries its parent's parameters (the
sampler learns that those parameters reach it) and `parent`, `epoch` and `beta`; an imported one
carries `source`, the file it came from. A training that continued a point names it in `continues`,
so every point has a lineage back to a fresh training.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from enum import StrEnum
from typing import Any

import optuna
from optuna.artifacts import get_all_artifact_meta
from optuna.distributions import BaseDistribution
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from hqsearch.study.attrs import CONTINUES_ATTR, EPOCH_ATTR, MEASURES_ATTR, ORIGIN_ATTR, PARENT_ATTR, info_of
from hqsearch.study.optuna_private import ARTIFACTS_ATTR_PREFIX

TRAINING_FILES = ("training.png", "training.csv")  # a training's curve; every point it produced has a copy


class Origin(StrEnum):
    TRAINING = "training"
    HARVEST = "harvest"
    IMPORT = "import"
    SYNTHESIS = "synthesis"  # a point told with its estimate, measured later: the same design, measured


def origin(t: FrozenTrial) -> Origin:
    return Origin(t.user_attrs.get(ORIGIN_ATTR, Origin.TRAINING))


def trainings_done(study: optuna.Study) -> tuple[int, int]:
    """COMPLETE trainings and the epochs they spent: what `n_trials` and `study.budget` count."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    trainings = [t for t in trials if origin(t) is Origin.TRAINING]
    return len(trainings), sum(int(info_of(t.user_attrs).get("epochs", 0)) for t in trainings)


def add_point(
    study: optuna.Study,
    values: list[float],
    user_attrs: dict[str, Any],
    constraints: dict[str, float],
    params: dict[str, Any] | None = None,
    distributions: dict[str, BaseDistribution] | None = None,
    artifacts: dict[str, str] | None = None,
) -> None:
    """One measured point as a COMPLETE trial; `user_attrs` must name its `origin`, `artifacts` are records
    from `copy_artifacts`."""
    assert ORIGIN_ATTR in user_attrs
    study.add_trial(
        optuna.trial.create_trial(
            values=values,
            params=params or {},
            distributions=distributions or {},
            user_attrs=user_attrs,
            system_attrs=artifacts,
            constraints=constraints or None,
        )
    )


def copy_artifacts(
    store: Any, storage: BaseStorage, owner: optuna.Study | optuna.Trial | FrozenTrial, names: tuple[str, ...]
) -> dict[str, str]:
    """Copies of `owner`'s artifacts with these file names, as the records of a point not yet added.

    A finished trial takes no `upload_artifact` (Optuna refuses to change it), so a point is added with
    the record `upload_artifact` would have written already among its system attributes; that is where
    the dashboard and `get_all_artifact_meta` look. Each copy has an id of its own, so deleting the study
    with its artifacts removes each file once.
    """
    records = {}
    for meta in get_all_artifact_meta(owner, storage=storage):
        if meta.filename not in names:
            continue
        copy = dataclasses.replace(meta, artifact_id=str(uuid.uuid4()))
        with store.open_reader(meta.artifact_id) as f:
            store.write(copy.artifact_id, f)
        records[ARTIFACTS_ATTR_PREFIX + copy.artifact_id] = json.dumps(dataclasses.asdict(copy))
    return records


def lineage(by_number: dict[int, FrozenTrial], number: int) -> list[str]:
    """Where a point comes from, itself first: `#12 e7` (epoch 7 of training 12) or `#12` (its final
    model), then the point each training continued, back to a fresh training or an import."""
    chain: list[str] = []
    t = by_number.get(number)
    while t is not None and len(chain) <= len(by_number):
        kind = origin(t)
        if kind is Origin.IMPORT:
            chain.append("import")
            break
        if kind is Origin.SYNTHESIS:  # the same design as the point it measures: that point's lineage
            t = by_number.get(t.user_attrs.get(MEASURES_ATTR))
            continue
        if kind is Origin.HARVEST:
            parent = t.user_attrs.get(PARENT_ATTR)
            chain.append(f"#{parent} e{t.user_attrs.get(EPOCH_ATTR)}")
            t = by_number.get(parent)  # the training that saved it
            if t is None:
                break
        else:
            chain.append(f"#{t.number}")
        continued = t.user_attrs.get(CONTINUES_ATTR)
        t = by_number.get(continued) if continued is not None else None
    return chain
