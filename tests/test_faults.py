"""Faults that clusters have, caused for real: a driver killed with SIGKILL mid-study."""

import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path
from subprocess import PIPE

import optuna
import pytest
import yaml
from conftest import tiny_raw
from helpers import process_alive, start_driver
from optuna.trial import TrialState

from hqsearch.config.schema import parse_config
from hqsearch.driver import run_study
from hqsearch.study.attrs import MODEL_ARTIFACT_ATTR


def wait_for(predicate, timeout: float, what: str, driver: subprocess.Popen | None = None):
    """Poll `predicate` until it is truthy; a driver that exits meanwhile fails the wait at once."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        if driver is not None and driver.poll() is not None:
            raise AssertionError(f"the driver exited with {driver.returncode} before {what}{said(driver)}")
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}{said(driver)}")


def said(driver: subprocess.Popen | None) -> str:
    """The end of what a driver started by `start_driver` printed, for a failure message."""
    log = getattr(driver, "log", None)
    if log is None or not log.exists():
        return ""
    return "; the driver printed:\n" + log.read_text()[-3000:]


def running_trials(db: Path) -> list[int]:
    """Numbers of the RUNNING trials in a study file a driver is still creating. Read-only on purpose:
    `optuna.load_study` would create the tables itself and race the driver that is creating them."""
    if not db.exists():
        return []
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
            return [n for (n,) in con.execute("SELECT number FROM trials WHERE state = 'RUNNING'")]
    except sqlite3.OperationalError:  # no tables yet, or locked by the writer for a moment
        return []


def test_driver_killed_with_sigkill_then_resumed(tmp_path):
    # long trials for the driver that gets killed, so it surely dies with trials in flight
    slow = tiny_raw(tmp_path / "out", "killed", study={"n_trials": 2}, training={"epochs": 400})
    url = f"sqlite:///{tmp_path / 'out' / 'study.db'}"
    driver = start_driver(tmp_path, slow)
    lost = wait_for(lambda: running_trials(tmp_path / "out" / "study.db"), 120, "the driver to start trials", driver)
    logs = tmp_path / "out" / "trials"
    wait_for(lambda: logs.exists() and len(list(logs.glob("*/trial.log"))) == 2, 120, "two trial workers", driver)
    workers = descendants(driver.pid)  # the fork server, its trial workers, the resource tracker
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    # the workers of the killed driver end themselves within seconds
    assert len(workers) >= 3
    wait_for(lambda: not any(process_alive(p) for p in workers), 30, "the workers to exit")

    study = optuna.load_study(study_name="killed", storage=url)
    orphans = study.get_trials(states=(TrialState.RUNNING,))
    assert orphans, "the killed driver left no RUNNING trial: nothing to recover"
    assert [t.user_attrs["driver"]["pid"] for t in orphans] == [driver.pid] * len(orphans)

    summary = run_study(parse_config(tiny_raw(tmp_path / "out", "killed", study={"n_trials": 2})))
    assert sorted(summary.recovered) == sorted(t.number for t in orphans)
    study = optuna.load_study(study_name="killed", storage=url)
    trials = study.trials
    assert len([t for t in trials if t.state == TrialState.COMPLETE]) == 2
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    by_number = {t.number: t for t in trials}
    for orphan in orphans:
        failed = by_number[orphan.number]
        assert failed.state == TrialState.FAIL and "is gone" in failed.user_attrs["error"]
        retries = [t for t in trials if t.user_attrs.get("retry_of") == orphan.number]
        assert len(retries) == 1 and retries[0].params == orphan.params
    assert lost  # the first poll saw them running


def test_sigterm_stops_the_driver_at_once_and_re_enqueues_its_trainings(tmp_path):
    """What a batch system sends at `scancel`, its time limit or preemption: the driver ends its workers,
    fails its running trainings and enqueues them again, and exits 143; the next driver runs them."""
    slow = tiny_raw(tmp_path / "out", "terminated", study={"n_trials": 2}, training={"epochs": 400})
    url = f"sqlite:///{tmp_path / 'out' / 'study.db'}"
    driver = start_driver(tmp_path, slow)
    logs = tmp_path / "out" / "trials"
    wait_for(lambda: logs.exists() and len(list(logs.glob("*/trial.log"))) == 2, 120, "two trial workers", driver)
    workers = descendants(driver.pid)
    driver.send_signal(signal.SIGTERM)
    assert driver.wait(timeout=60) == 143, said(driver)
    assert "stopped: stopped by SIGTERM" in driver.log.read_text()
    wait_for(lambda: not any(process_alive(p) for p in workers), 30, "the workers to exit")

    trials = optuna.load_study(study_name="terminated", storage=url).trials
    stopped = [t for t in trials if t.state == TrialState.FAIL]
    assert len(stopped) == 2 and all("stopped by SIGTERM" in t.user_attrs["error"] for t in stopped)
    retries = {t.user_attrs["retry_of"]: t.number for t in trials if t.state == TrialState.WAITING}
    assert sorted(retries) == sorted(t.number for t in stopped)

    summary = run_study(parse_config(tiny_raw(tmp_path / "out", "terminated", study={"n_trials": 2})))
    assert summary.complete == 2 and not summary.recovered  # nothing was left RUNNING to recover
    done = {t.number: t for t in optuna.load_study(study_name="terminated", storage=url).trials}
    for t in stopped:  # each ran again, as it was asked
        assert done[retries[t.number]].state == TrialState.COMPLETE and done[retries[t.number]].params == t.params


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        out = subprocess.run(["pgrep", "-P", str(todo.pop())], capture_output=True, text=True).stdout
        children = [int(p) for p in out.split()]
        found += children
        todo += children
    return found


def test_ctrl_c_lets_running_trials_finish_and_leaves_no_running_trial(tmp_path):
    raw = tiny_raw(tmp_path / "out", "interrupted", study={"n_trials": 6}, training={"epochs": 80})
    url = f"sqlite:///{tmp_path / 'out' / 'study.db'}"
    driver = start_driver(tmp_path, raw, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    logs = tmp_path / "out" / "trials"
    wait_for(lambda: logs.exists() and len(list(logs.glob("*/trial.log"))) == 2, 120, "two running trials", driver)
    driver.send_signal(signal.SIGINT)
    out, _ = driver.communicate(timeout=300)
    assert "stopped: interrupted by Ctrl-C" in out
    trials = optuna.load_study(study_name="interrupted", storage=url).trials
    assert len(trials) == 2  # nothing new was asked after the Ctrl-C
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2  # the running ones were let finish


@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_while_a_finished_trial_is_recorded_leaves_no_running_trial(tmp_path, presses):
    """Ctrl-C (once, or twice in quick succession) lands while the driver uploads a finished trial's files:
    that trial is recorded whole, the others end and are told, and the run says so without a traceback."""
    raw = tiny_raw(tmp_path / "out", "recording", study={"n_trials": 3}, training={"epochs": 10})
    config = tmp_path / "recording.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    marker = tmp_path / "recording_started"
    slow = [sys.executable, str(Path(__file__).with_name("slow_uploads.py")), "1.0", str(marker)]
    driver = subprocess.Popen([*slow, "run", str(config), "--no-progress"], stdout=PIPE, stderr=PIPE, text=True)
    wait_for(marker.exists, 180, "the driver to record a finished trial", driver)
    for _ in range(presses):
        driver.send_signal(signal.SIGINT)
        time.sleep(0.1)
    out, err = driver.communicate(timeout=180)
    trials = optuna.load_study(study_name="recording", storage=f"sqlite:///{tmp_path / 'out' / 'study.db'}").trials
    assert [t.number for t in trials if t.state == TrialState.RUNNING] == [], out + err
    assert driver.returncode == 130, out + err
    assert "Traceback" not in out + err
    recorded = [t for t in trials if t.state == TrialState.COMPLETE]
    assert recorded and all(MODEL_ARTIFACT_ATTR in t.user_attrs for t in recorded)  # its uploads were not cut
    if presses == 1:
        assert len(recorded) == len(trials) == 2  # nothing asked after the Ctrl-C; the running ones finished
        assert "stopped: interrupted by Ctrl-C" in out
    else:
        assert "stopped: cancelled by a second Ctrl-C" in out
        cancelled = [t for t in trials if t.state == TrialState.FAIL]
        assert all("cancelled by the user" in t.user_attrs["error"] for t in cancelled)
