"""Every private part of Optuna that hqsearch uses, in one place (`tests/test_optuna_private.py` checks
that each is still there and shaped as used, so an Optuna release that changes one fails that test first).

Optuna has no public call for what these do: write several user attributes in one transaction, fail a
trial only while it is still RUNNING (one conditional UPDATE), add a point with an artifact record already
in place, or open a trial of the study by its id. Each is the storage's own code path, not a copy of it.
"""

from __future__ import annotations

import importlib
import json
import sqlite3
from datetime import datetime
from typing import Any

import optuna
from optuna.artifacts._list_artifact_meta import ArtifactMeta
from optuna.artifacts._upload import ARTIFACTS_ATTR_PREFIX  # the key `upload_artifact` files a record under
from optuna.trial import FrozenTrial, TrialState

__all__ = [
    "ARTIFACTS_ATTR_PREFIX",
    "ArtifactMeta",
    "add_trial_to",
    "fail_if_running",
    "rdb_backend",
    "set_user_attrs_at_once",
    "set_system_attr",
    "set_trial_failed",
    "storage_of",
    "trial_of",
]


def storage_of(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The study's storage (what `get_all_artifact_meta` needs to read a FrozenTrial's artifacts)."""
    return study._storage


def trial_of(study: optuna.Study, frozen: FrozenTrial) -> optuna.Trial:
    """A live handle on a RUNNING trial of the study, as `study.ask` returns one."""
    return optuna.Trial(study, frozen._trial_id)


def add_trial_to(study: optuna.Study, template: FrozenTrial) -> FrozenTrial:
    """A new trial created from `template` as it is (RUNNING included), which `study.add_trial` refuses."""
    storage = study._storage
    return storage.get_trial(storage.create_new_trial(study._study_id, template_trial=template))


def set_system_attr(study: optuna.Study, trial: optuna.Trial | FrozenTrial, key: str, value: Any) -> None:
    study._storage.set_trial_system_attr(trial._trial_id, key, value)


def rdb_backend(storage: optuna.storages.BaseStorage) -> optuna.storages.RDBStorage | None:
    """The database under the cache `create_study` wraps an RDBStorage in; None for other storages."""
    backend = getattr(storage, "_backend", storage)
    return backend if isinstance(backend, optuna.storages.RDBStorage) else None


def set_user_attrs_at_once(backend: optuna.storages.RDBStorage, trial: optuna.Trial, attrs: dict[str, Any]) -> None:
    """Several user attributes in one transaction: one check that the trial is running, one upsert of every
    key on PostgreSQL and SQLite (Optuna's own per-key path on other databases)."""
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    table = models.TrialUserAttributeModel
    dialects = {"postgresql": "sqlalchemy.dialects.postgresql"}
    if sqlite3.sqlite_version_info >= (3, 24, 0):  # SQLite's upsert
        dialects["sqlite"] = "sqlalchemy.dialects.sqlite"
    with _create_scoped_session(backend.scoped_session, True) as session:
        if backend.engine.name not in dialects:
            for key, value in attrs.items():
                backend._set_trial_attr_without_commit(session, table, trial._trial_id, key, value)
            return
        row = models.TrialModel.find_or_raise_by_id(trial._trial_id, session)
        backend.check_trial_is_updatable(trial._trial_id, row.state)
        insert = importlib.import_module(dialects[backend.engine.name]).insert
        rows = [{"trial_id": trial._trial_id, "key": k, "value_json": json.dumps(v)} for k, v in attrs.items()]
        stmt = insert(table).values(rows)
        session.execute(
            stmt.on_conflict_do_update(
                index_elements=[table.trial_id, table.key], set_={"value_json": stmt.excluded.value_json}
            )
        )


def fail_if_running(backend: optuna.storages.RDBStorage, t: FrozenTrial, key: str, error: str) -> bool:
    """`UPDATE trials SET state = FAIL WHERE trial_id = ? AND state = RUNNING`, with the user attribute
    `key` set to `error` in the same transaction; True when this call changed the row."""
    import sqlalchemy as sa
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    row = models.TrialModel
    with _create_scoped_session(backend.scoped_session) as session:
        changed = session.execute(
            sa.update(row)
            .where(row.trial_id == t._trial_id, row.state == TrialState.RUNNING)
            .values(state=TrialState.FAIL, datetime_complete=datetime.now())
            .execution_options(synchronize_session=False)
        ).rowcount
        if changed == 1:  # the row is this transaction's now: no check that it is RUNNING, it is not
            attr = models.TrialUserAttributeModel
            found = session.query(attr).filter(attr.trial_id == t._trial_id, attr.key == key).one_or_none()
            if found is None:
                session.add(attr(trial_id=t._trial_id, key=key, value_json=json.dumps(error)))
            else:
                found.value_json = json.dumps(error)
    return changed == 1


def set_trial_failed(study: optuna.Study, t: FrozenTrial, key: str, error: str) -> None:
    """Optuna's own two calls on a storage that is not a database (each atomic in a journal)."""
    study._storage.set_trial_user_attr(t._trial_id, key, error)
    study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
