"""End to end: real HGQ2 trials in worker processes, told to a real SQLite-backed Optuna study."""

import optuna
from optuna.artifacts import get_all_artifact_meta
from optuna.trial import TrialState

from hqsearch.driver import run_study
from hqsearch.study.optuna_private import storage_of
from hqsearch.study.points import Origin, origin
from hqsearch.study.storage import StudyError, artifact_store, load_existing, open_study


def states(cfg) -> list[str]:
    study = load_existing(cfg.study.storage_url, cfg.study.name)
    return [t.state.name for t in study.trials]


def test_study_runs_end_to_end(finished_study):
    cfg = finished_study
    study = load_existing(cfg.study.storage_url, cfg.study.name)
    assert study.metric_names == ["accuracy", "luts", "latency_cycles"]
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(done) == 3
    for t in done:
        acc, luts, cycles = t.values
        assert 0 < acc <= 1 and luts > 0 and cycles >= 1
        assert t.user_attrs["metrics"]["luts"] == luts
        assert t.user_attrs["sources"]["luts"] == "alkaid estimate"
        assert t.user_attrs["sources"]["accuracy"].startswith("alkaid bit-exact emulation")
        assert set(t.user_attrs["timings"]) == {"train", "firmware", "synth"}
        assert t.user_attrs["info"]["versions"]["hgq2"] == "0.2.0"
        assert t.user_attrs["executor"] == "local"
        assert t.constraints == {"luts<=1e+06": luts - 1e6}
        names = {a.filename for a in get_all_artifact_meta(t, storage=storage_of(study))}
        assert {"model.keras", "metrics.json", "trial.log", "training.png", "training.csv"} <= names


def test_resume_adds_up_and_never_duplicates(tiny_config):
    cfg = tiny_config("resume", study={"n_trials": 1})
    assert run_study(cfg).complete == 1
    more = cfg.with_overrides(n_trials=2)
    summary = run_study(more)
    assert summary.complete == 2 and len(summary.told) == 1
    assert run_study(more).told == []  # already at n_trials: nothing to do
    assert optuna.get_all_study_names(cfg.study.storage_url) == ["resume"]
    study = load_existing(cfg.study.storage_url, "resume")
    assert [t.number for t in study.trials] == [0, 1]
    assert states(cfg) == ["COMPLETE"] * 2


def test_changed_objectives_are_refused(tiny_config):
    cfg = tiny_config("objectives")
    open_study(cfg)
    other = tiny_config("objectives", study={"objectives": {"accuracy": "max", "ffs": "min"}})
    try:
        open_study(other)
    except StudyError as err:
        assert "use a new study name" in str(err)
    else:
        raise AssertionError("a study with other objectives must be refused")


def test_failing_trial_is_recorded_and_the_study_goes_on(tiny_config, tmp_path, monkeypatch):
    monkeypatch.setenv("HQ_TEST_MARKER", str(tmp_path / "marker"))
    cfg = tiny_config(
        "failing",
        data={"source": "callable", "function": "helpers:digits_failing_once"},
        execution={"max_concurrent": 1},
    )
    summary = run_study(cfg)
    assert summary.complete == 2 and summary.failed_this_run == 1
    study = load_existing(cfg.study.storage_url, "failing")
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert len(failed) == 1 and failed[0].number == 0
    assert failed[0].user_attrs["error"] == (
        "DataError: data.function: 'helpers:digits_failing_once' raised RuntimeError: data source broke on purpose"
    )
    assert "Traceback" in failed[0].user_attrs["info"]["traceback"]


def test_a_run_gives_up_after_max_failures(tiny_config):
    cfg = tiny_config(
        "hopeless",
        data={"source": "callable", "function": "helpers:digits_in_workers_only"},
        execution={"max_concurrent": 1, "max_failures": 2},
    )
    summary = run_study(cfg)
    assert summary.complete == 0 and "2 trials failed" in summary.stopped_because
    assert states(cfg) == ["FAIL", "FAIL"]


def test_stage_timeout_kills_the_worker(tiny_config):
    cfg = tiny_config(
        "slow",
        data={"source": "callable", "function": "helpers:digits_slow"},
        execution={"max_concurrent": 1, "max_failures": 1, "timeouts": {"train": 3}},
    )
    summary = run_study(cfg)
    study = load_existing(cfg.study.storage_url, "slow")
    (t,) = study.trials
    assert t.state == TrialState.FAIL
    assert t.user_attrs["error"] == "stage 'train' ran over its timeout of 3 s; killed"
    assert t.duration.total_seconds() < 60
    assert summary.complete == 0


def test_yosys_study_measures_every_point(yosys_study):
    cfg = yosys_study
    study = load_existing(cfg.study.storage_url, "yosys")
    points = study.get_trials(states=(TrialState.COMPLETE,))
    assert [origin(t) for t in points].count(Origin.TRAINING) == 1 and len(points) >= 2  # and its candidates
    for t in points:
        src = t.user_attrs["sources"]
        assert src["luts"].startswith("yosys ") and src["estimated_luts"] == "alkaid estimate"
        assert t.user_attrs["metrics"]["luts"] > 0 and t.user_attrs["metrics"]["estimated_luts"] > 0
    (training,) = [t for t in points if origin(t) is Origin.TRAINING]
    names = {a.filename for a in get_all_artifact_meta(training, storage=storage_of(study))}
    assert {"yosys.log", "stat.json", "rtl.tar.gz", "training.png", "training.csv"} <= names
    store = artifact_store(cfg)
    curves = {}  # every point carries its training's curve, each a file of its own
    for t in points:
        (png,) = [a for a in get_all_artifact_meta(t, storage=storage_of(study)) if a.filename == "training.png"]
        with store.open_reader(png.artifact_id) as f:
            curves[png.artifact_id] = f.read()
    assert len(curves) == len(points) and len(set(curves.values())) == 1
    trial_dir = cfg.study.run_dir / "trials" / f"{training.number:05d}"
    assert (trial_dir / "rtl.tar.gz").exists() and not (trial_dir / "rtl").exists()


def test_a_second_live_driver_shares_the_budget(tiny_config):
    import time

    from hqsearch.study.attrs import DRIVER_ATTR, HEARTBEAT_ATTR
    from hqsearch.study.orphans import DriverId
    from hqsearch.study.storage import open_study

    cfg = tiny_config("joined", execution={"max_concurrent": 2})  # n_trials 2
    study = open_study(cfg)
    other = study.ask()  # a trial another, living driver is running
    other.set_user_attr(DRIVER_ATTR, {**DriverId().to_dict(), "id": "otherdriver"})
    other.set_user_attr(HEARTBEAT_ATTR, time.time())

    summary = run_study(cfg)
    assert summary.told == [1]  # one trial of its own: the other driver's running trial fills the budget
    assert summary.recovered == []  # a living driver's trial is no orphan
    states = [t.state for t in load_existing(cfg.study.storage_url, "joined").trials]
    assert states == [TrialState.RUNNING, TrialState.COMPLETE]


def test_an_outcome_without_a_needed_metric_is_a_fail_not_a_crash(tiny_config):
    # bypass the config check on purpose: the driver itself must not trust every outcome
    cfg = tiny_config("no_brams", study={"n_trials": 1}, execution={"max_failures": 1})
    study = cfg.study.model_copy(update={"objectives": {"accuracy": "maximize", "brams": "minimize"}})
    cfg = cfg.model_copy(update={"study": study})
    summary = run_study(cfg)
    assert summary.complete == 0 and summary.failed_this_run == 1
    (t,) = load_existing(cfg.study.storage_url, "no_brams").trials
    assert t.state == TrialState.FAIL
    assert t.user_attrs["error"].startswith("backend 'estimate' reported no usable brams; the study needs them")
    assert t.user_attrs["metrics"]["luts"] > 0  # what was measured is kept


def test_a_trial_claimed_by_a_peer_is_dropped_not_fatal(tiny_config):
    """A peer saw no heartbeat in time and claimed our running trial (RUNNING -> FAIL): we log it and go on."""
    cfg = tiny_config("claimed", study={"n_trials": 1}, execution={"max_concurrent": 1})
    peer = open_study(cfg)
    claimed = []

    def on_progress(p):
        if p.running and not claimed:
            (t,) = peer.get_trials(states=(TrialState.RUNNING,))
            peer.tell(t.number, state=TrialState.FAIL)  # what a peer's orphan claim does
            claimed.append(t.number)

    summary = run_study(cfg, on_progress)
    assert summary.dropped == claimed == [0]
    assert summary.complete == 1  # the run went on to a trial of its own
    states = [t.state for t in load_existing(cfg.study.storage_url, "claimed").trials]
    assert states == [TrialState.FAIL, TrialState.COMPLETE]


def test_heartbeats_go_on_while_the_driver_waits(tiny_config):
    import threading
    import time

    from hqsearch.study.attrs import HEARTBEAT_ATTR

    cfg = tiny_config(
        "beats",
        study={"n_trials": 1},
        training={"epochs": 60},
        execution={"max_concurrent": 1, "heartbeat": 0.5, "stale_after": 5},
    )
    seen: set[float] = set()
    done = threading.Event()
    study = open_study(cfg)  # here, not in the watcher: two first openings at once race to make its tables

    def watch():
        while not done.is_set():
            for t in study.get_trials(states=(TrialState.RUNNING,)):
                seen.add(t.user_attrs.get(HEARTBEAT_ATTR))
            time.sleep(0.3)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        summary = run_study(cfg)
    finally:
        done.set()
        watcher.join()
    assert summary.complete == 1 and summary.recovered == []
    assert len(seen) >= 4  # the heartbeat moved on every half second while the trial ran


def test_heartbeats_go_on_while_a_finished_trial_is_uploaded(tiny_config):
    """Uploading a finished trial's files takes longer than `stale_after`: its heartbeats go on, so a peer
    sweeping for orphans all the while never claims the trial whose results are being written."""
    import threading

    from instant_executor import InstantExecutor
    from slow_uploads import SlowStore

    from hqsearch.driver import Driver
    from hqsearch.study.attrs import MODEL_ARTIFACT_ATTR
    from hqsearch.study.orphans import DriverId, recover_orphans

    cfg = tiny_config(
        "slow_upload",
        study={"n_trials": 1},
        execution={"max_concurrent": 1, "heartbeat": 0.2, "stale_after": 1.0},
    )
    driver = Driver(cfg, executor=InstantExecutor())
    uploads: list[float] = []
    driver.store = SlowStore(driver.store, 1.5, lambda: uploads.append(1.5))  # each longer than stale_after
    claimed: list[int] = []
    done = threading.Event()

    def peer():
        study, me = open_study(cfg), DriverId()
        while not claimed and not done.wait(0.2):  # one claim is enough (a retry would be claimed again)
            claimed.extend(recover_orphans(study, me, cfg.execution.stale_after))

    sweeper = threading.Thread(target=peer)
    sweeper.start()
    try:
        summary = driver.run()
    finally:
        done.set()
        sweeper.join()
    assert sum(uploads) > 2 * cfg.execution.stale_after  # the trial was being recorded long enough to look lost
    assert claimed == [] and summary.dropped == []
    (t,) = load_existing(cfg.study.storage_url, "slow_upload").trials
    assert t.state == TrialState.COMPLETE and t.user_attrs[MODEL_ARTIFACT_ATTR]


def test_a_continuation_keeps_its_heartbeat_through_a_slow_checkpoint_download(tiny_config, monkeypatch):
    """From `ask` on, the driver's trial names its driver and gets heartbeats: a peer sweeping for orphans
    while the checkpoint downloads slowly (longer than `stale_after`) claims nothing."""
    import time

    import hqsearch.driver as driver
    from hqsearch.study.attrs import DRIVER_ATTR, HEARTBEAT_ATTR
    from hqsearch.study.orphans import DriverId, recover_orphans

    cfg = tiny_config(
        "slow_checkpoint",
        study={"n_trials": 2},
        training={"epochs": 2, "continuation": {"share": 1.0, "startup": 1}},
        execution={"max_concurrent": 1, "heartbeat": 0.5, "stale_after": 2},
    )
    real = driver.download_artifact
    seen = []

    def slow_download(**kwargs):  # a checkpoint on a slow network share
        peer, me = open_study(cfg), DriverId()
        beats, claimed = set(), []
        for _ in range(8):  # 4 s: twice `stale_after`
            time.sleep(0.5)
            (t,) = peer.get_trials(states=(TrialState.RUNNING,))
            beats.add(t.user_attrs.get(HEARTBEAT_ATTR))
            claimed += recover_orphans(peer, me, cfg.execution.stale_after)
        seen.append((t.user_attrs.get(DRIVER_ATTR, {}).get("pid"), len(beats), claimed))
        return real(**kwargs)

    monkeypatch.setattr(driver, "download_artifact", slow_download)
    summary = run_study(cfg)
    import os

    assert seen == [(os.getpid(), seen[0][1], [])]  # owned by this driver, and no peer claimed it
    assert seen[0][1] >= 4  # the heartbeat moved while the download ran
    assert summary.complete == 2 and summary.dropped == [] and summary.recovered == []
    assert states(cfg) == ["COMPLETE", "COMPLETE"]


def _drive(raw: dict, ready, go, out) -> None:
    """A driver process: built, then run once every driver of the test is ready."""
    from hqsearch.config.schema import parse_config
    from hqsearch.driver import Driver

    driver = Driver(parse_config(raw))
    ready.put(True)
    go.wait()
    out.put(driver.run().measured_later)


def _deferred_study(tiny_model, tmp_path, url: str, n: int) -> tuple[dict, list[int]]:
    """A study whose one training is done, with `n` designs told with their estimate and deferred, and too
    few measured designs to rule any out: every one of them is measured. Returns its raw config and the
    deferred points' numbers."""
    from conftest import tiny_raw
    from optuna.artifacts import upload_artifact

    from hqsearch.config.schema import parse_config
    from hqsearch.search.fidelity import DEFERRED
    from hqsearch.study.attrs import ESTIMATE_KEY, MODEL_ARTIFACT_ATTR, ORIGIN_ATTR, SKIPPED_ATTR_KEY
    from hqsearch.study.points import add_point

    raw = tiny_raw(
        tmp_path,
        "deferred",
        study={"n_trials": 1, "objectives": {"accuracy": "max", "luts": "min"}},
        synthesis={"backend": "yosys", "cache": False, "fidelity_after": 10},
        execution={"max_concurrent": 1},
    )
    raw["study"].update({"storage": url, "artifact_dir": str(tmp_path / "artifacts")})
    cfg = parse_config(raw)
    study = open_study(cfg)
    _, path, ebops = tiny_model
    add_point(study, [0.2, 100.0], {ORIGIN_ATTR: Origin.TRAINING.value, "info": {"epochs": 1}}, {})  # n_trials
    artifact = upload_artifact(artifact_store=artifact_store(cfg), file_path=str(path), study_or_trial=study)
    for i in range(n):
        luts = 100.0 * (i + 1)
        metrics = {"accuracy": 0.5 + i / 100, "luts": luts, "ebops": ebops}
        info = {ESTIMATE_KEY: {"luts": luts, "ffs": luts / 10}, SKIPPED_ATTR_KEY: DEFERRED}
        attrs = {ORIGIN_ATTR: Origin.HARVEST.value, MODEL_ARTIFACT_ATTR: artifact, "metrics": metrics, "info": info}
        add_point(study, [metrics["accuracy"], luts], attrs, {"unmeasured": 1.0})
    return raw, [t.number for t in study.get_trials()[1:]]


def test_two_drivers_never_measure_the_same_deferred_design(postgres_url, tiny_model, tmp_path):
    """Two driver processes on one study whose trainings are done measure its deferred designs (Yosys),
    starting at the same instant, each with a run folder of its own (as on two hosts, which share the
    PostgreSQL storage and the artifact store): each design is synthesised by exactly one of them, and
    measured once. The claim they race for is tested on SQLite as well (`test_orphans`)."""
    import multiprocessing as mp
    from collections import Counter

    from hqsearch.study.attrs import MEASURES_ATTR

    raw, deferred = _deferred_study(tiny_model, tmp_path, postgres_url, 3)

    ctx = mp.get_context("spawn")
    ready, go, out = ctx.Queue(), ctx.Event(), ctx.Queue()
    runs = [tmp_path / "host_a", tmp_path / "host_b"]
    raws = [{**raw, "study": {**raw["study"], "output_dir": str(run)}} for run in runs]
    drivers = [ctx.Process(target=_drive, args=(r, ready, go, out)) for r in raws]
    for p in drivers:
        p.start()
    for _ in drivers:
        ready.get(timeout=240)
    go.set()
    measured = [out.get(timeout=300) for _ in drivers]
    for p in drivers:
        p.join()

    trials = load_existing(postgres_url, "deferred").trials
    done = Counter(
        t.user_attrs[MEASURES_ATTR] for t in trials if MEASURES_ATTR in t.user_attrs and t.state.name == "COMPLETE"
    )
    assert done == Counter(deferred)  # every deferred design measured, none twice
    synthesised = Counter(int(d.parent.name) for run in runs for d in run.glob("trials/*/measured"))
    assert synthesised == Counter(deferred)  # and synthesised by one driver only
    assert sum(measured) == len(deferred)
    assert not [t for t in trials if t.state == TrialState.RUNNING]  # no claim left behind


def test_a_measurement_claimed_by_a_dead_driver_is_measured_by_the_next(tiny_model, tmp_path):
    """A driver died while it measured a deferred design: the next driver fails its claim (without
    re-enqueuing it as a training) and measures the design itself."""
    import multiprocessing as mp

    from hqsearch.config.schema import parse_config
    from hqsearch.study.attrs import MEASURES_ATTR
    from hqsearch.study.orphans import DriverId, measure

    raw, (number,) = _deferred_study(tiny_model, tmp_path, f"sqlite:///{tmp_path / 'study.db'}", 1)
    cfg = parse_config(raw)
    gone = mp.get_context("spawn").Process(target=int)
    gone.start()
    gone.join()
    study = open_study(cfg)
    lost = measure(study, study.trials[number], DriverId(id="deadbeef", pid=gone.pid))
    assert lost is not None

    summary = run_study(cfg)
    assert summary.recovered == [lost.number] and summary.measured_later == 1
    trials = load_existing(cfg.study.storage_url, "deferred").trials
    assert trials[lost.number].state == TrialState.FAIL
    assert [t.state for t in trials if MEASURES_ATTR in t.user_attrs] == [TrialState.FAIL, TrialState.COMPLETE]
    assert not [t for t in trials if t.state in (TrialState.WAITING, TrialState.RUNNING)]
