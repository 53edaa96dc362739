"""Orphaned trials on real storages: which RUNNING trials are orphans, and claims raced by real processes."""

import multiprocessing as mp
import time

import optuna
import pytest
from optuna.trial import TrialState

from hqsearch.study.attrs import DRIVER_ATTR, HEARTBEAT_ATTR, MEASURES_ATTR, ORIGIN_ATTR
from hqsearch.study.orphans import DriverId, is_orphan, measure, recover_orphans
from hqsearch.study.points import Origin, add_point

CLAIMERS = 4
ORPHANS = 30


def _dead_driver() -> DriverId:
    """The identity of a driver process that has exited."""
    p = mp.get_context("spawn").Process(target=int)
    p.start()
    p.join()
    return DriverId(id="deadbeef", pid=p.pid)


def _dead_owner() -> dict:
    return _dead_driver().to_dict()


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


def _points(study: optuna.Study, n: int) -> list:
    """`n` points told with their estimate, as the trainings add them."""
    dist = {"beta": optuna.distributions.FloatDistribution(1e-7, 1e-4, log=True)}
    for i in range(n):
        add_point(study, [0.5], {ORIGIN_ATTR: Origin.HARVEST.value}, {}, {"beta": 1e-6 * (i + 1)}, dist)
    return study.get_trials()


def _measure_all(url: str, name: str, go, out) -> None:
    study = optuna.load_study(study_name=name, storage=url)
    points = [t for t in study.get_trials() if MEASURES_ATTR not in t.user_attrs]
    me = DriverId()
    go.wait()
    out.put([p.number for p in points if measure(study, p, me) is not None])


def test_concurrent_measurement_claims_give_each_point_one_measurer(storage_url, request):
    """Several driver processes claim the same points' later measurements at the same instant, in the same
    order (as drivers that judged the study alike would): each point is claimed by exactly one."""
    name = f"measure-{request.node.callspec.id}-{time.time_ns()}"
    study = optuna.create_study(study_name=name, storage=storage_url, directions=["maximize"])
    points = _points(study, 8)

    ctx = mp.get_context("spawn")
    go, out = ctx.Event(), ctx.Queue()
    claimers = [ctx.Process(target=_measure_all, args=(storage_url, name, go, out)) for _ in range(CLAIMERS)]
    for p in claimers:
        p.start()
    time.sleep(3)
    go.set()
    claims = [out.get(timeout=120) for _ in claimers]
    for p in claimers:
        p.join()

    assert sorted(n for c in claims for n in c) == [p.number for p in points]  # one claim kept per point
    trials = optuna.load_study(study_name=name, storage=storage_url).trials[len(points) :]
    running = [t for t in trials if t.state == TrialState.RUNNING]
    assert sorted(t.user_attrs[MEASURES_ATTR] for t in running) == [p.number for p in points]
    withdrawn = [t for t in trials if t.state == TrialState.FAIL]  # the rest withdrew, naming the winner
    assert len(withdrawn) == len(trials) - len(points)
    assert all(t.user_attrs["error"].startswith("withdrawn: trial ") for t in withdrawn)
    assert all(t.user_attrs[ORIGIN_ATTR] == Origin.SYNTHESIS.value for t in trials)


def test_a_measurement_claim_whose_driver_died_can_be_claimed_again(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", directions=["maximize"])
    (point,) = _points(study, 1)
    lost = measure(study, point, _dead_driver())
    assert lost is not None and lost.state == TrialState.RUNNING
    assert lost.user_attrs[MEASURES_ATTR] == point.number and lost.params == point.params
    me = DriverId()
    assert measure(study, point, me) is None  # taken while its driver is thought alive

    assert recover_orphans(study, me, stale_after=3600) == [lost.number]  # its process is gone
    assert study.get_trials(states=(TrialState.WAITING,)) == []  # a lost claim is not re-enqueued as a training
    again = measure(study, point, me)
    assert again is not None and again.number > lost.number
    assert study.trials[lost.number].user_attrs["error"].startswith("lost: driver deadbeef")
