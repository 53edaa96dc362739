"""The Ray executor on a real local Ray instance: separate train and synth tasks, a worker killed mid-trial."""

import os
import signal
import threading
import time

from optuna.trial import TrialState

from hqsearch.driver import run_study
from hqsearch.study import load_existing

RAY = {"executor": "ray", "max_concurrent": 2, "ray": {"num_cpus": 2}}


def test_ray_study_with_yosys_runs_train_and_synth_as_separate_tasks(tiny_config):
    cfg = tiny_config(
        "ray",
        synthesis={"backend": "yosys", "fidelity": "all"},  # every design measured in its synth task
        execution={**RAY, "ray": {"num_cpus": 2, "transfer": "shared_fs"}},
        study={"n_trials": 3},
        # a hard ramp, so each training has an earlier, more accurate epoch to harvest; the third training
        # continues a point of the first two
        training={
            "epochs": 10,
            "beta_schedule": "ramp",
            "harvest": {"max_candidates": 1},
            "continuation": {"share": 1.0, "startup": 2},
        },
        search_space={"beta": {"low": 3e-4, "high": 1e-3, "log": True}},
        model={"widths": [16]},
    )
    summary = run_study(cfg)
    assert summary.complete == 3 and summary.harvested >= 1
    study = load_existing(cfg.study.storage_url, "ray")
    trainings = {t.number: t for t in study.trials if "parent" not in t.user_attrs}
    for t in trainings.values():
        info = t.user_attrs["info"]
        assert t.user_attrs["executor"] == "ray"
        assert info["train_pid"] != info["synth_pid"]  # two tasks, each in a fresh worker
        assert t.user_attrs["sources"]["luts"].startswith("yosys")
        assert set(t.user_attrs["timings"]) == {"train", "firmware", "synth"}
    continued = [t for t in trainings.values() if "continues" in t.user_attrs]
    assert len(continued) == 1  # its train task loaded the point's weights
    point = study.trials[continued[0].user_attrs["continues"]]
    start = continued[0].user_attrs["info"]["start_val_accuracy"]
    assert start == point.user_attrs["metrics"]["float_accuracy"]
    for t in study.trials:  # candidates travel to the synth task with their parent and are measured there
        if "parent" in t.user_attrs:
            parent = trainings[t.user_attrs["parent"]].user_attrs["info"]
            assert t.user_attrs["sources"]["luts"].startswith("yosys")
            assert t.user_attrs["info"]["synth_pid"] == parent["synth_pid"] != parent["train_pid"]


def run_in_thread(cfg):
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("summary", run_study(cfg)))
    thread.start()
    return thread, result


def kill_first_training_worker(cfg) -> int:
    pidfile = cfg.study.run_dir / "trials" / "00000" / "train.pid"
    deadline = time.monotonic() + 120
    while not pidfile.exists():
        assert time.monotonic() < deadline, "the training task never started"
        time.sleep(0.2)
    time.sleep(1.0)
    pid = int(pidfile.read_text())
    os.kill(pid, signal.SIGKILL)
    return pid


def test_a_killed_worker_is_retried(tiny_config):
    cfg = tiny_config(
        "ray_retry",
        study={"n_trials": 1},
        training={"epochs": 100},
        execution={**RAY, "ray": {"num_cpus": 2, "max_retries": 1}},
    )
    thread, result = run_in_thread(cfg)
    killed = kill_first_training_worker(cfg)
    thread.join(timeout=600)
    assert result["summary"].complete == 1
    (t,) = load_existing(cfg.study.storage_url, "ray_retry").trials
    assert t.state == TrialState.COMPLETE and t.user_attrs["info"]["train_pid"] != killed


def test_a_killed_worker_without_retries_fails_the_trial(tiny_config):
    cfg = tiny_config(
        "ray_noretry",
        study={"n_trials": 1},
        training={"epochs": 100},
        execution={**RAY, "max_failures": 1, "ray": {"num_cpus": 2, "max_retries": 0}},
    )
    thread, result = run_in_thread(cfg)
    kill_first_training_worker(cfg)
    thread.join(timeout=600)
    (t,) = load_existing(cfg.study.storage_url, "ray_noretry").trials
    assert t.state == TrialState.FAIL and "train task lost" in t.user_attrs["error"]
    assert result["summary"].complete == 0


def test_an_exception_in_a_ray_task_fails_the_trial_with_its_message(tiny_config):
    cfg = tiny_config(
        "ray_raises",
        study={"n_trials": 1},
        data={"source": "callable", "function": "helpers:digits_in_workers_only"},
        execution={**RAY, "max_failures": 1},
    )
    assert run_study(cfg).complete == 0
    (t,) = load_existing(cfg.study.storage_url, "ray_raises").trials
    assert t.state == TrialState.FAIL and t.user_attrs["error"] == (
        "DataError: data.function: 'helpers:digits_in_workers_only' raised RuntimeError: data source broke on purpose"
    )
    assert "digits_in_workers_only" in t.user_attrs["info"]["traceback"]
