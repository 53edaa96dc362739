"""Orphaned trials on real storages: which RUNNING trials are orphans, and claims raced by real processes."""

import multiprocessing as mp
import time

import optuna
import pytest
from optuna.trial import TrialState

from hqsearch.orphans import DRIVER_ATTR, HEARTBEAT_ATTR, DriverId, is_orphan, recover_orphans

CLAIMERS = 4
ORPHANS = 30


def _dead_owner() -> dict:
    """The identity of a driver process that has exited."""
    p = mp.get_context("spawn").Process(target=int)
    p.start()
    p.join()
    return {**DriverId().to_dict(), "id": "deadbeef", "pid": p.pid}


def test_an_ownerless_running_trial_is_an_orphan_once_stale(tmp_path):
    """A driver that died between `ask` and recording itself leaves a RUNNING trial naming no driver."""
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", directions=["maximize"])
    t = study.ask()
    t.suggest_float("beta", 1e-7, 1e-4, log=True)
    (frozen,) = study.get_trials(states=(TrialState.RUNNING,))
    started = frozen.datetime_start.timestamp()
    me = DriverId()
    assert is_orphan(frozen, me, stale_after=60, now=started + 30) is None  # maybe a driver still recording itself
    assert "no driver recorded on it" in is_orphan(frozen, me, stale_after=60, now=started + 61)

    time.sleep(1.2)
    assert recover_orphans(study, me, stale_after=1.0) == [0]
    states = [x.state for x in study.get_trials()]
    assert states == [TrialState.FAIL, TrialState.WAITING]  # failed, its parameters enqueued again
    assert study.trials[0].user_attrs["error"].startswith("lost: no driver recorded on it, and no heartbeat")
    assert study.trials[1].system_attrs["fixed_params"] == t.params


def test_a_live_owner_keeps_its_trial(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", directions=["maximize"])
    t = study.ask()
    t.set_user_attr(DRIVER_ATTR, {**DriverId().to_dict(), "id": "alive"})  # this very process: alive
    t.set_user_attr(HEARTBEAT_ATTR, time.time())
    assert recover_orphans(study, DriverId(), stale_after=3600) == []
    assert study.trials[0].state == TrialState.RUNNING


def _claim(url: str, name: str, go, out) -> None:
    study = optuna.load_study(study_name=name, storage=url)
    study.get_trials()  # connected and read once before the race starts
    go.wait()
    out.put(recover_orphans(study, DriverId(), stale_after=3600))


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    return request.getfixturevalue("postgres_url")


def test_concurrent_claimers_never_claim_the_same_orphan(storage_url, request):
    """Several driver processes sweep the same orphans at the same instant: each is failed and re-enqueued
    exactly once."""
    name = f"orphans-{request.node.callspec.id}-{time.time_ns()}"
    study = optuna.create_study(study_name=name, storage=storage_url, directions=["maximize"])
    owner = _dead_owner()
    for _ in range(ORPHANS):
        t = study.ask()
        t.suggest_float("beta", 1e-7, 1e-4, log=True)
        t.set_user_attr(DRIVER_ATTR, owner)

    ctx = mp.get_context("spawn")
    go, out = ctx.Event(), ctx.Queue()
    claimers = [ctx.Process(target=_claim, args=(storage_url, name, go, out)) for _ in range(CLAIMERS)]
    for p in claimers:
        p.start()
    time.sleep(3)  # let every claimer connect, so that they really start together
    go.set()
    claims = [out.get(timeout=120) for _ in claimers]
    for p in claimers:
        p.join()

    claimed = sorted(n for c in claims for n in c)
    assert claimed == list(range(ORPHANS))  # every orphan claimed exactly once between them
    trials = optuna.load_study(study_name=name, storage=storage_url).trials
    states = [t.state for t in trials]
    assert states.count(TrialState.FAIL) == ORPHANS and states.count(TrialState.WAITING) == ORPHANS
    assert all(t.user_attrs["error"].startswith("lost: driver deadbeef") for t in trials[:ORPHANS])
