"""The measured Pareto front (see `front`: what `study.best_trials` holds), ranked and tabulated.

Ranking is lexicographic over the objectives in config order, each in its own direction: with
`{accuracy: max, luts: min}` the most accurate design comes first and ties go to the smaller one.
"""

from __future__ import annotations

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from hqsearch.config.metrics import METRICS, Direction
from hqsearch.search.front import measured_front, meets_constraints, stands
from hqsearch.study.attrs import (
    EPOCH_ATTR,
    ERROR_ATTR,
    MEASURES_ATTR,
    PARENT_ATTR,
    SKIPPED_ATTR_KEY,
    SOURCE_ATTR,
    info_of,
    metrics_of,
    params_of,
    sources_of,
    timings_of,
)
from hqsearch.study.points import Origin, lineage, origin


def objective_names(study: optuna.Study) -> list[str]:
    return list(study.metric_names or [f"objective_{i}" for i in range(len(study.directions))])


def _row(t: FrozenTrial, names: list[str]) -> dict:
    kind = origin(t)
    row: dict = {"trial": t.number, "state": t.state.name, "origin": kind.value}
    if t.values is not None:
        row.update(zip(names, t.values, strict=True))
    metrics = metrics_of(t.user_attrs)
    row.update({k: metrics[k] for k in METRICS if k in metrics and k not in row})  # in the registry's order
    done = t.state == TrialState.COMPLETE
    row["feasible"] = meets_constraints(t.constraints, estimates=True) if done else None  # the study's constraints
    row["stands"] = stands(t)  # may stand on the measured front: feasible and measured
    for k, v in params_of(t.user_attrs).items():
        if k != "notes":
            row[f"param_{k}"] = "-".join(map(str, v)) if isinstance(v, list) else v
    row["mismatches"] = info_of(t.user_attrs).get("mismatches")
    row["luts_source"] = sources_of(t.user_attrs).get("luts")
    skipped = info_of(t.user_attrs).get(SKIPPED_ATTR_KEY)
    row["synthesised"] = not skipped  # False: told with the alkaid estimate (see `fidelity`)
    row["skipped_because"] = skipped or None
    row["measures"] = t.user_attrs.get(MEASURES_ATTR)  # a later synthesis: the point it measured
    row.update({f"time_{k}_s": v for k, v in timings_of(t.user_attrs).items()})
    row["duration_s"] = t.duration.total_seconds() if t.duration else None
    row["error"] = t.user_attrs.get(ERROR_ATTR)
    row["parent"] = t.user_attrs.get(PARENT_ATTR)
    row["epoch"] = t.user_attrs.get(EPOCH_ATTR)
    row["source"] = t.user_attrs.get(SOURCE_ATTR)
    # training cost: a training's epochs; its harvested and imported points cost none
    row["epochs"] = info_of(t.user_attrs).get("epochs", 0) if kind is Origin.TRAINING else 0
    row["completed"] = t.datetime_complete.timestamp() if t.datetime_complete else None
    return row


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """Every trial, one row each. A harvested point's `completed` is its parent's (it exists from then on);
    an imported point's is empty (it was there before any training)."""
    names = objective_names(study)
    rows = [_row(t, names) for t in study.get_trials(deepcopy=False)]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    done = frame.set_index("trial")["completed"]
    harvested = frame["origin"] == Origin.HARVEST.value
    frame.loc[harvested, "completed"] = frame.loc[harvested, "parent"].map(done).to_numpy()
    frame.loc[frame["origin"] == Origin.IMPORT.value, "completed"] = None
    frame["training"] = frame["origin"] == Origin.TRAINING.value
    return frame


def rank_front(study: optuna.Study, sort: str | None = None) -> pd.DataFrame:
    """The measured front (`front.measured_front`, which is `study.best_trials`) as a table, best first,
    with a 1-based `rank` column.

    `sort` ranks by one metric first (in its own direction, e.g. `luts` ascending), the objectives after.
    """
    names = objective_names(study)
    trials = study.get_trials(deepcopy=False)
    maximise = [d == optuna.study.StudyDirection.MAXIMIZE for d in study.directions]
    front = pd.DataFrame([_row(t, names) for t in measured_front(trials, maximise)])
    if front.empty:
        return front
    by_number = {t.number: t for t in trials}
    front["lineage"] = [" ← ".join(lineage(by_number, n)) for n in front["trial"]]
    keys = names[:]
    ascending = [d == optuna.study.StudyDirection.MINIMIZE for d in study.directions]
    if sort is not None:
        if sort not in METRICS or sort not in front:
            have = [m for m in METRICS if m in front]
            raise KeyError(f"cannot sort by {sort!r}: the front has {', '.join(have)}")
        keys, ascending = [sort, *keys], [METRICS[sort].direction is Direction.MINIMIZE, *ascending]
    front = front.sort_values(keys + ["trial"], ascending=ascending + [True], kind="stable").reset_index(drop=True)
    front.insert(0, "rank", range(1, len(front) + 1))
    return front
