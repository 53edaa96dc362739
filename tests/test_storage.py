"""Studies on every storage a cluster uses: a real PostgreSQL server, a journal file, SQLite (orphans claimed
concurrently on them: test_orphans)."""

import subprocess
import sys
from contextlib import contextmanager

import pytest
from helpers import free_port
from optuna.trial import TrialState

from hqsearch.driver import Driver, run_study
from hqsearch.exceptions import ConfigError
from hqsearch.study.storage import StudyError, load_existing, make_storage


def test_postgresql_backed_study(tiny_config, postgres_url):
    cfg = tiny_config("pg", study={"storage": postgres_url, "n_trials": 2})
    assert run_study(cfg).complete == 2
    study = load_existing(postgres_url, "pg")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    assert study.metric_names == ["accuracy", "luts", "latency_cycles"]
    assert len(study.best_trials) >= 1


def test_journal_file_storage(tiny_config, tmp_path):
    url = f"journal:///{tmp_path / 'study.log'}"
    cfg = tiny_config("journal", study={"storage": url, "n_trials": 1})
    assert run_study(cfg).complete == 1
    assert (tmp_path / "study.log").stat().st_size > 0
    assert load_existing(url, "journal").trials[0].state == TrialState.COMPLETE


def test_a_storage_that_is_no_url_is_refused():
    with pytest.raises(StudyError, match="is not a URL"):
        make_storage("runs/study.db")


@contextmanager
def grpc_proxy(url: str):
    """Optuna's gRPC storage proxy in front of `url`, in a process of its own, as Optuna documents it."""
    port = free_port()
    code = (
        "import sys, optuna; optuna.storages.run_grpc_proxy_server("
        "optuna.storages.get_storage(sys.argv[1]), host='127.0.0.1', port=int(sys.argv[2]))"
    )
    server = subprocess.Popen([sys.executable, "-W", "ignore", "-c", code, url, str(port)])
    try:
        yield f"grpc://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.parametrize("kind", ["journal", "grpc"])
def test_a_driver_runs_and_resumes_a_study_on_a_journal_file_and_through_a_grpc_proxy(tiny_config, tmp_path, kind):
    """Instant trials (the driver's own work): a second driver on the same storage continues the study."""
    from instant_executor import InstantExecutor

    @contextmanager
    def storage():
        if kind == "journal":
            yield f"journal:///{tmp_path / 'study.log'}"
        else:
            with grpc_proxy(f"sqlite:///{tmp_path / 'behind_proxy.db'}") as url:
                yield url

    with storage() as url:
        cfg = tiny_config(kind, study={"storage": url, "n_trials": 4})
        assert Driver(cfg, executor=InstantExecutor()).run().complete == 4
        more = cfg.model_copy(update={"study": cfg.study.model_copy(update={"n_trials": 7})})
        assert Driver(more, executor=InstantExecutor(seed=1)).run().complete == 7
        study = load_existing(url, kind)
        assert [t.number for t in study.trials] == list(range(7))
        assert {t.state for t in study.trials} == {TrialState.COMPLETE}
        assert study.metric_names == ["accuracy", "luts", "latency_cycles"]
    if kind == "grpc":  # the proxy wrote to the database behind it
        assert len(load_existing(f"sqlite:///{tmp_path / 'behind_proxy.db'}", kind).trials) == 7


@pytest.mark.parametrize(
    "url",
    ["grpc://127.0.0.1", "grpc://:13000", "grpc://db:port", "grpc://db:99999", "grpc://db:13000/study", "grpc:db:1"],
)
def test_a_bad_grpc_address_is_a_config_error(url):
    with pytest.raises(ConfigError, match="grpc://host:port"):
        make_storage(url)


@pytest.mark.parametrize("url", ["journal://study.log", "journal:///", "journal:study.log"])
def test_a_bad_journal_url_is_a_config_error(url):
    with pytest.raises(ConfigError, match="journal:///path"):
        make_storage(url)


def test_a_grpc_proxy_that_does_not_answer_is_one_error(monkeypatch):
    import hqsearch.study.storage

    monkeypatch.setattr(hqsearch.study.storage, "GRPC_CONNECT_TIMEOUT", 1.0)
    with pytest.raises(StudyError, match="no gRPC storage proxy answered"):
        make_storage(f"grpc://127.0.0.1:{free_port()}")
