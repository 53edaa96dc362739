"""The Optuna study behind a config: storage, sampler, artifact store. The storage is the source of truth."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import FileSystemArtifactStore

from hqsearch.config.schema import StudyConfig, StudySection
from hqsearch.exceptions import ConfigError, StudyError
from hqsearch.study.attrs import CONFIG_ATTR
from hqsearch.study.optuna_private import rdb_backend, set_user_attrs_at_once


class OnePerTraining(optuna.samplers.TPESampler):
    """TPE that counts each set of parameters once. A training's harvested epochs are points of the study
    with the training's parameters: Optuna ranks them all (the front they form is what the training
    achieved), but TPE would fit its good and bad densities to each copy as if it were another sample, so
    one training with six epochs on the front outweighs six trainings with one each, and its dominated
    epochs count against the very parameters its good ones favour. Here the parameters of the ranked
    points are kept once per split, and a set that is among the good ones is not also counted bad."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._good: set[tuple] = set()

    def _build_parzen_estimator(self, study, search_space, trials, handle_below):  # type: ignore[override]
        seen = set() if handle_below else set(self._good)  # `_sample` builds the good split, then the bad
        kept = []
        for t in trials:
            key = tuple(sorted(t.params.items()))
            if key not in seen:
                seen.add(key)
                kept.append(t)
        if handle_below:
            self._good = seen
        return super()._build_parzen_estimator(study, search_space, kept, handle_below)


def make_sampler(study: StudySection) -> optuna.samplers.BaseSampler:
    """TPE is multivariate over groups of parameters that occur together (`group=True`): the space is
    conditional (a continuation samples no ramp start, `l1` exists only when `l1_on`), and an imported
    point has no parameters at all, either of which leaves plain multivariate TPE's one joint space
    without beta, sampled on its own. It sees each training once (`OnePerTraining`)."""
    seed = study.seed
    match study.sampler:
        case "tpe":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # `group`, since Optuna 2.8
                return OnePerTraining(seed=seed, constant_liar=True, multivariate=True, group=True)
        case "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed)
        case "random":
            return optuna.samplers.RandomSampler(seed=seed)
        case "gp":
            return optuna.samplers.GPSampler(seed=seed)
    raise AssertionError(study.sampler)


JOURNAL_PREFIX = "journal:///"


# query parameters that carry a secret (libpq's `password`/`sslpassword`, tokens of other services)
SECRET_QUERY_KEYS = frozenset({"password", "passwd", "pwd", "sslpassword", "secret", "token", "access_token", "key"})
HIDDEN = "***"


def shown_url(url: str) -> str:
    """The URL without its secrets (the password of its user part, secret query parameters): the one form of
    a storage URL, or any URL of the config, that is shown, logged or stored. A string that is not a URL is
    returned as it is."""
    if "://" not in url or url.startswith(JOURNAL_PREFIX):
        return url
    from urllib.parse import parse_qsl, urlencode, urlsplit

    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")  # a password may hold an unescaped "@"
    netloc = parts.netloc
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:{HIDDEN}@{hostport}"
    query = parts.query
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(k.lower() in SECRET_QUERY_KEYS for k, _ in pairs):
        query = urlencode([(k, HIDDEN if k.lower() in SECRET_QUERY_KEYS else v) for k, v in pairs], safe="*")
    # replaced in place, not rebuilt: urlunsplit would drop the empty host of sqlite:///path
    shown = url.replace(f"//{parts.netloc}", f"//{netloc}", 1) if netloc != parts.netloc else url
    return shown.replace(f"?{parts.query}", f"?{query}", 1) if query != parts.query else shown


def scrubbed(text: str, url: str) -> str:
    """`text` (a driver's error message) with `url`, and its password, as `shown_url` shows them."""
    text = text.replace(url, shown_url(url))
    userinfo, at, _ = url.partition("://")[2].partition("/")[0].rpartition("@")
    password = userinfo.split(":", 1)[1] if at and ":" in userinfo else ""
    return text.replace(password, HIDDEN) if password else text


def redacted(obj: Any) -> Any:
    """`obj` (a dumped config: dicts, lists, scalars) with every URL in it as `shown_url` shows it: the storage
    URL, a Ray cluster address, and any URL a later field holds."""
    if isinstance(obj, dict):
        return {k: redacted(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redacted(v) for v in obj]
    if isinstance(obj, str) and "://" in obj:
        return shown_url(obj)
    return obj


def stored_form(cfg: StudyConfig) -> dict:
    """The config as the study stores it (`CONFIG_ATTR`, which optuna-dashboard shows): without secrets."""
    return redacted(cfg.model_dump(mode="json"))


@contextmanager
def storage_errors(url: str) -> Iterator[None]:
    """A storage that cannot be reached or opened becomes one `StudyError` line naming it."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except SQLAlchemyError as err:
        reason = scrubbed(str(getattr(err, "orig", None) or err).strip().splitlines()[0], url)
        raise StudyError(f"storage {shown_url(url)}: cannot open it ({reason})") from None
    except ImportError as err:
        reason = scrubbed(str(err), url)
        raise StudyError(f"storage {shown_url(url)}: its database driver is not installed ({reason})") from None
    except OSError as err:
        raise StudyError(f"storage {shown_url(url)}: {scrubbed(str(err.strerror or err), url)}") from None


def make_storage(url: str) -> str | optuna.storages.BaseStorage:
    """An Optuna storage for a URL: RDB URLs (sqlite, postgresql, mysql) as Optuna takes them;
    `journal:///path` for a journal file locked with open(2) so it works on NFS (as with sqlite, three
    slashes start a relative path and four an absolute one); and `grpc://host:port` for Optuna's gRPC
    storage proxy (`optuna.storages.run_grpc_proxy_server`, run apart, in front of a database)."""
    if url.startswith(JOURNAL_PREFIX) and url != JOURNAL_PREFIX:
        from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

        path = url.removeprefix(JOURNAL_PREFIX)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(path, lock_obj=JournalFileOpenLock(path)))
    if url.lower().startswith("journal:"):
        raise ConfigError(f"study.storage {url!r}: a journal file is journal:///path (three slashes, then the path)")
    if url.lower().startswith("grpc:"):
        return grpc_storage(url)
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        return url
    if "://" in url:
        # connections dropped by a database restart or a firewall are replaced instead of failing a tell
        with storage_errors(url):  # RDBStorage connects at once: every caller gets the one-line error
            return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
    raise StudyError(
        f"storage {url!r} is not a URL: use sqlite:///path, postgresql+psycopg2://…, journal:///path or grpc://host:port"
    )


GRPC_CONNECT_TIMEOUT = 10.0  # seconds a gRPC storage proxy has to answer when a study is opened


def grpc_storage(url: str) -> optuna.storages.BaseStorage:
    """`grpc://host:port` as Optuna's `GrpcStorageProxy`, once its server answers (one error line if not)."""
    from urllib.parse import urlsplit

    usage = "a gRPC storage proxy is grpc://host:port, e.g. grpc://db-proxy:13000"
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError as err:  # a port that is no number, or out of range
        raise ConfigError(f"study.storage {url!r}: {err}; {usage}") from None
    if not url.lower().startswith("grpc://") or not host or port is None:
        raise ConfigError(f"study.storage {url!r}: {usage}")
    if parts.path.strip("/") or parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError(f"study.storage {url!r}: nothing may follow the port; {usage}")
    with warnings.catch_warnings():  # experimental since Optuna 4.2, unchanged in 5
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = optuna.storages.GrpcStorageProxy(host=host, port=port)
    try:
        storage.wait_server_ready(timeout=GRPC_CONNECT_TIMEOUT)
    except ConnectionError:
        storage.close()
        raise StudyError(
            f"storage {url}: no gRPC storage proxy answered at {host}:{port} within {GRPC_CONNECT_TIMEOUT:.0f} s "
            "(start one with optuna.storages.run_grpc_proxy_server in front of the study's database)"
        ) from None
    return storage


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
            f"study {s.name!r} in {shown_url(s.storage_url)} has objectives {have}, "
            f"the config asks for {s.objectives}; use a new study name to change objectives"
        )
    if old is None:
        with warnings.catch_warnings():  # stable in practice; the dashboard labels axes with it
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(s.metric_names)
    study.set_user_attr(CONFIG_ATTR, stored_form(cfg))
    return study


def set_user_attrs(trial: optuna.Trial, attrs: dict[str, Any]) -> None:
    """Several user attributes of a running trial in one transaction where the storage is a database, one
    by one elsewhere: each write is a commit, and they are most of what the driver costs per trial."""
    backend = rdb_backend(trial.storage)
    if backend is None or not attrs:
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        return
    set_user_attrs_at_once(backend, trial, attrs)


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


def stored_config(study: optuna.Study, storage: str | None = None) -> StudyConfig:
    """The config a study was last run with, validated again: for commands given a storage, not a file.

    The stored storage URL has no password (`stored_form`): `storage`, the URL the study was opened with,
    takes its place."""
    from hqsearch.config.schema import parse_config

    raw = study_config(study)
    if not raw:
        raise StudyError(f"study {study.study_name!r} stores no hqsearch config: give the study's config file")
    if storage is not None and isinstance(raw.get("study"), dict):
        raw = {**raw, "study": {**raw["study"], "storage": storage}}
    try:
        return parse_config(raw, f"study {study.study_name}'s stored config")
    except ConfigError as err:  # stored by another hqsearch version, or needs what is not installed here
        raise ConfigError(
            f"{err}\n(the config stored in the study does not load here: give the study's config file)"
        ) from None


def artifact_store(cfg: StudyConfig) -> FileSystemArtifactStore:
    """The study's artifact store; a folder that cannot be made is one error naming `study.artifact_dir`."""
    path = cfg.study.artifact_path
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise cfg.error("study.artifact_dir", f"cannot make the folder {path} ({err.strerror or err})") from None
    return FileSystemArtifactStore(str(path))
