"""The Optuna study behind a config: storage, sampler, artifact store. The storage is the source of truth."""

from __future__ import annotations

import importlib
import json
import sqlite3
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import FileSystemArtifactStore

from .config import StudyConfig, StudySection
from .exceptions import ConfigError, StudyError

CONFIG_ATTR = "hqsearch_config"


def make_sampler(study: StudySection) -> optuna.samplers.BaseSampler:
    seed = study.seed
    match study.sampler:
        case "tpe":
            return optuna.samplers.TPESampler(seed=seed, constant_liar=True, multivariate=True)
        case "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed)
        case "random":
            return optuna.samplers.RandomSampler(seed=seed)
        case "gp":
            return optuna.samplers.GPSampler(seed=seed)
    raise AssertionError(study.sampler)


JOURNAL_PREFIX = "journal:///"


def shown_url(url: str) -> str:
    """The storage URL without its password, for messages."""
    if "://" not in url or url.startswith(JOURNAL_PREFIX):
        return url
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


@contextmanager
def storage_errors(url: str) -> Iterator[None]:
    """A storage that cannot be reached or opened becomes one `StudyError` line naming it."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except SQLAlchemyError as err:
        reason = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
        raise StudyError(f"storage {shown_url(url)}: cannot open it ({reason})") from None
    except ImportError as err:
        raise StudyError(f"storage {shown_url(url)}: its database driver is not installed ({err})") from None
    except OSError as err:
        raise StudyError(f"storage {shown_url(url)}: {err.strerror or err}") from None


def make_storage(url: str) -> str | optuna.storages.BaseStorage:
    """An Optuna storage for a URL: RDB URLs (sqlite, postgresql, mysql) as Optuna takes them, and
    `journal:///path` for a journal file locked with open(2) so it works on NFS. As with sqlite, three
    slashes start a relative path and four an absolute one."""
    if url.startswith(JOURNAL_PREFIX):
        from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

        path = url.removeprefix(JOURNAL_PREFIX)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(path, lock_obj=JournalFileOpenLock(path)))
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        return url
    if "://" in url:
        # connections dropped by a database restart or a firewall are replaced instead of failing a tell
        with storage_errors(url):  # RDBStorage connects at once: every caller gets the one-line error
            return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
    raise StudyError(f"storage {url!r} is not a URL: use sqlite:///path, postgresql+psycopg2://… or journal:///path")


def open_study(cfg: StudyConfig) -> optuna.Study:
    """Create the study, or load it when it exists; refuse one whose objectives differ."""
    s = cfg.study
    with storage_errors(s.storage_url):
        study = optuna.create_study(
            study_name=s.name,
            storage=make_storage(s.storage_url),
            directions=s.directions,
            sampler=make_sampler(s),
            load_if_exists=True,
        )
    old = study.metric_names
    directions = [d.name.lower() for d in study.directions]
    if (old is not None and list(old) != s.metric_names) or directions != s.directions:
        have = dict(zip(old or [], directions, strict=False))
        raise StudyError(
            f"study {s.name!r} in {s.storage_url} has objectives {have}, the config asks for {s.objectives}; "
            "use a new study name to change objectives"
        )
    if old is None:
        with warnings.catch_warnings():  # stable in practice; the dashboard labels axes with it
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(s.metric_names)
    study.set_user_attr(CONFIG_ATTR, cfg.model_dump(mode="json"))
    return study


def set_user_attrs(trial: optuna.Trial, attrs: dict[str, Any]) -> None:
    """Several user attributes of a running trial in one transaction where the storage is a database (one
    check that the trial is running, one upsert of every key on PostgreSQL and SQLite), one by one
    elsewhere: each write is a commit, and they are most of what the driver costs per trial.

    Optuna has no public call for it; this uses `RDBStorage`'s own session, models and checks (Optuna 5.x)."""
    storage = trial.storage
    backend = getattr(storage, "_backend", storage)  # inside the cache `create_study` wraps it in
    if not isinstance(backend, optuna.storages.RDBStorage) or not attrs:
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        return
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    table = models.TrialUserAttributeModel
    dialects = {"postgresql": "sqlalchemy.dialects.postgresql"}
    if sqlite3.sqlite_version_info >= (3, 24, 0):  # SQLite's upsert
        dialects["sqlite"] = "sqlalchemy.dialects.sqlite"
    with _create_scoped_session(backend.scoped_session, True) as session:
        if backend.engine.name not in dialects:  # Optuna's own per-key path (MySQL and others)
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


def load_existing(url: str, name: str) -> optuna.Study:
    with storage_errors(url):
        storage = make_storage(url)
        try:
            return optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            names = optuna.get_all_study_names(storage)
    raise StudyError(f"no study {name!r} in {shown_url(url)} (studies there: {', '.join(names) or 'none'})")


def study_config(study: optuna.Study) -> dict:
    """The config a study was last run with, as stored in the study itself."""
    return study.user_attrs.get(CONFIG_ATTR, {})


def stored_config(study: optuna.Study) -> StudyConfig:
    """The config a study was last run with, validated again: for commands given a storage, not a file."""
    from .config import parse_config

    raw = study_config(study)
    if not raw:
        raise StudyError(f"study {study.study_name!r} stores no hqsearch config: give the study's config file")
    try:
        return parse_config(raw, f"study {study.study_name}'s stored config")
    except ConfigError as err:  # stored by another hqsearch version, or needs what is not installed here
        raise ConfigError(
            f"{err}\n(the config stored in the study does not load here: give the study's config file)"
        ) from None


def artifact_store(cfg: StudyConfig) -> FileSystemArtifactStore:
    cfg.study.artifact_path.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(cfg.study.artifact_path))
