"""Optuna's private parts that hqsearch uses are still there, shaped as used: a new Optuna release that moves
or changes one fails here, by name, before any study does. Each is also used for real: on SQLite and on a
journal, the calls of `study/optuna_private.py` do what their callers count on."""

from __future__ import annotations

import dataclasses
import inspect

import optuna
import pytest
from optuna.trial import TrialState

from hqsearch.study import optuna_private as private
from hqsearch.study.orphans import claim
from hqsearch.study.storage import set_user_attrs


def test_the_private_names_are_there():
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    assert private.ARTIFACTS_ATTR_PREFIX == "artifacts:"
    assert {f.name for f in dataclasses.fields(private.ArtifactMeta)} >= {"artifact_id", "filename", "mimetype"}
    session_params = list(inspect.signature(_create_scoped_session).parameters)
    assert session_params[:2] == ["scoped_session", "ignore_integrity_error"]
    assert callable(models.TrialModel.find_or_raise_by_id)
    assert {"trial_id", "key", "value_json"} <= set(models.TrialUserAttributeModel.__table__.columns.keys())
    assert {"trial_id", "state", "datetime_complete"} <= set(models.TrialModel.__table__.columns.keys())
    params = list(inspect.signature(optuna.storages.RDBStorage._set_trial_attr_without_commit).parameters)
    assert params == ["self", "session", "model_cls", "trial_id", "key", "value"]
    assert callable(optuna.storages.RDBStorage.check_trial_is_updatable)
    assert list(inspect.signature(optuna.Trial).parameters) == ["study", "trial_id"]


@pytest.fixture(params=["sqlite", "journal"])
def study(request, tmp_path):
    if request.param == "sqlite":
        storage = f"sqlite:///{tmp_path / 'study.db'}"
    else:
        storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "j.log")))
    return optuna.create_study(storage=storage, directions=["maximize"])


def test_the_private_calls_do_what_their_callers_count_on(study):
    is_db = private.rdb_backend(private.storage_of(study)) is not None
    assert is_db == isinstance(private.storage_of(study), optuna.storages._CachedStorage)
    trial = study.ask()
    set_user_attrs(trial, {"a": 1, "b": {"c": [2]}})
    set_user_attrs(trial, {"a": 3})  # an upsert, not a second row
    frozen = study.trials[0]
    assert frozen.user_attrs == {"a": 3, "b": {"c": [2]}}
    assert private.trial_of(study, frozen).number == trial.number
    private.set_system_attr(study, trial, "k", "v")
    assert study.trials[0].system_attrs["k"] == "v"
    assert claim(study, frozen, "lost") and not claim(study, frozen, "lost again")  # one claimer wins
    (failed,) = study.trials
    assert failed.state == TrialState.FAIL and failed.user_attrs["error"] == "lost"
    template = optuna.trial.create_trial(state=TrialState.RUNNING, user_attrs={"x": 1})
    added = private.add_trial_to(study, template)
    assert added.state == TrialState.RUNNING and added.user_attrs == {"x": 1} and added.number == 1
