"""Studies on every storage a cluster uses: a real PostgreSQL server, a journal file, SQLite."""

import multiprocessing as mp

import optuna
import pytest
from optuna.trial import TrialState

from hqsearch.driver import run_study
from hqsearch.orphans import DRIVER_ATTR, DriverId, recover_orphans
from hqsearch.study import StudyError, load_existing, make_storage


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


def _dead_owner() -> dict:
    """The identity of a driver process that has exited."""
    p = mp.get_context("spawn").Process(target=int)
    p.start()
    p.join()
    me = DriverId()
    return {**me.to_dict(), "id": "deadbeef", "pid": p.pid}


def _claim(url: str, name: str, out) -> None:
    study = optuna.load_study(study_name=name, storage=url)
    out.put(recover_orphans(study, DriverId(), stale_after=3600))


def test_two_drivers_never_claim_the_same_orphan(postgres_url):
    name = "orphans"
    study = optuna.create_study(study_name=name, storage=postgres_url, directions=["maximize"])
    owner = _dead_owner()
    for _ in range(20):
        t = study.ask()
        t.suggest_float("beta", 1e-7, 1e-4, log=True)
        t.set_user_attr(DRIVER_ATTR, owner)

    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    claimers = [ctx.Process(target=_claim, args=(postgres_url, name, out)) for _ in range(2)]
    for p in claimers:
        p.start()
    claims = [out.get(timeout=120) for _ in claimers]
    for p in claimers:
        p.join()

    claimed = sorted(claims[0] + claims[1])
    assert claimed == list(range(20))  # every orphan claimed exactly once between the two
    states = [t.state for t in optuna.load_study(study_name=name, storage=postgres_url).trials]
    assert states.count(TrialState.FAIL) == 20 and states.count(TrialState.WAITING) == 20
