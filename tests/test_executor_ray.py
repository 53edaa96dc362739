"""The Ray executor on a real local Ray instance (the one the session shares, as a driver joins a cluster):
separate train and synth tasks in warm workers, each stage in a fresh process; a stage process or a Ray
worker killed mid-trial."""

import os
import signal
import threading
import time
from pathlib import Path

import pytest
import yaml
from conftest import tiny_raw
from helpers import ended, parent_of
from optuna.trial import TrialState

from hqsearch.driver import run_study
from hqsearch.exceptions import ConfigError, ToolNotHere
from hqsearch.study.storage import load_existing

RAY = {"executor": "ray", "max_concurrent": 2, "ray": {"num_cpus": 2}}


def test_ray_study_with_yosys_runs_train_and_synth_as_separate_tasks(ray_instance, tiny_config):
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
        # bitwidths from 3: designs of a few hundred LUTs, which Yosys measures in seconds
        search_space={"beta": {"low": 3e-4, "high": 1e-3, "log": True}, "init_weight_bits": 3, "init_act_bits": 3},
        model={"widths": [8]},
    )
    summary = run_study(cfg)
    assert summary.complete == 3 and summary.harvested >= 1
    study = load_existing(cfg.study.storage_url, "ray")
    trainings = {t.number: t for t in study.trials if "parent" not in t.user_attrs}
    for t in trainings.values():
        info = t.user_attrs["info"]
        assert t.user_attrs["executor"] == "ray"
        assert info["train_pid"] != info["synth_pid"]  # two tasks, each stage in a fresh process
        assert t.user_attrs["sources"]["luts"].startswith("yosys")
        assert set(t.user_attrs["timings"]) == {"train", "firmware", "synth"}
    infos = [t.user_attrs["info"] for t in trainings.values()]
    stages = [(info[f"{s}_pid"], info[f"{s}_worker"]) for info in infos for s in ("train", "synth")]
    assert len({pid for pid, _ in stages}) == len(stages)  # a fresh process for every stage...
    assert len({worker for _, worker in stages}) < len(stages)  # ...forked in Ray workers that stay warm
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


def first_training(cfg) -> int:
    """The pid of the first trial's training process, once it trains."""
    pidfile = cfg.study.run_dir / "trials" / "00000" / "train.pid"
    deadline = time.monotonic() + 120
    while not pidfile.exists():
        assert time.monotonic() < deadline, "the training task never started"
        time.sleep(0.2)
    time.sleep(1.0)
    return int(pidfile.read_text())


def test_a_killed_worker_is_retried(ray_instance, tiny_config):
    cfg = tiny_config(
        "ray_retry",
        study={"n_trials": 1},
        training={"epochs": 100},
        execution={**RAY, "ray": {"num_cpus": 2, "max_retries": 1}},
    )
    thread, result = run_in_thread(cfg)
    killed = first_training(cfg)
    os.kill(killed, signal.SIGKILL)  # the stage's process: its Ray task sees it die and is retried
    thread.join(timeout=600)
    assert result["summary"].complete == 1
    (t,) = load_existing(cfg.study.storage_url, "ray_retry").trials
    assert t.state == TrialState.COMPLETE and t.user_attrs["info"]["train_pid"] != killed


def test_a_killed_ray_worker_without_retries_fails_the_trial_and_ends_its_stage_process(ray_instance, tiny_config):
    cfg = tiny_config(
        "ray_noretry",
        study={"n_trials": 1},
        training={"epochs": 100},
        execution={**RAY, "max_failures": 1, "ray": {"num_cpus": 2, "max_retries": 0}},
    )
    thread, result = run_in_thread(cfg)
    training = first_training(cfg)
    worker = parent_of(parent_of(training))  # the Ray worker that runs the task, above its fork server
    assert Path(f"/proc/{worker}/cmdline").read_bytes().startswith(b"ray::")
    os.kill(worker, signal.SIGKILL)
    assert ended(training, within=10)  # the training it forked goes with it
    thread.join(timeout=600)
    (t,) = load_existing(cfg.study.storage_url, "ray_noretry").trials
    assert t.state == TrialState.FAIL and "train task lost" in t.user_attrs["error"]
    assert result["summary"].complete == 0


def test_an_exception_in_a_ray_task_fails_the_trial_with_its_message(ray_instance, tiny_config):
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


def test_a_stage_resource_no_node_has_is_named_after_the_wait(ray_instance, tiny_config):
    """A cluster whose nodes never get the resource: the preflight waits `resource_wait`, then names the
    stage's key, the resource and what the nodes have, instead of waiting forever; nothing is written."""
    wait = {"address": ray_instance, "resource_wait": 2}
    cfg = tiny_config("typo", execution={**RAY, "ray": {**wait, "synth": {"resources": {"vivdo": 1}}}})
    started = time.monotonic()
    with pytest.raises(ConfigError) as err:
        run_study(cfg)
    assert time.monotonic() - started >= 2
    assert str(err.value).startswith(
        "<config>: execution.ray.synth.resources: no node of the Ray cluster has 'vivdo' "
        "(waited 2 s, execution.ray.resource_wait); its nodes have: "
    )
    assert "CPU 2" in str(err.value) and "node:" not in str(err.value)
    assert not cfg.study.run_dir.exists()
    cfg = tiny_config("gpu", execution={**RAY, "ray": {**wait, "train": {"num_gpus": 1}}})
    with pytest.raises(ConfigError, match=r"^<config>: execution\.ray\.train\.num_gpus: no node .* has 'GPU'"):
        run_study(cfg)


def test_the_synthesis_tool_is_looked_for_on_the_synthesis_nodes(ray_instance, tiny_config):
    """No vivado_hls on this machine's Ray node: the preflight's task on each synthesis node finds it missing
    and says which node, before any trial."""
    cfg = tiny_config("novivado", synthesis={"backend": "vivado"}, execution={**RAY, "ray": {"address": ray_instance}})
    missing = r"^<config>: synthesis\.backend: 'vivado' runs vivado_hls, which is not on PATH on Ray node \S+ "
    with pytest.raises(ToolNotHere, match=missing):
        run_study(cfg)
    assert not cfg.study.run_dir.exists()


# without the shared instance: the executor starts its own, or finds no cluster where its config says
def test_an_address_where_no_ray_head_answers_is_one_error_before_anything_starts(tmp_path, hq_here):
    """No cluster at all: the address is probed (a bounded TCP connect) before ray.init, which would retry it
    for minutes; `check` warns, `run` refuses with one line naming the key, and writes nothing."""
    raw = tiny_raw(tmp_path, "noray", execution={**RAY, "ray": {"address": "127.0.0.1:1"}})
    raw["study"].pop("output_dir")  # runs/ under tmp_path, which must stay unwritten
    config = tmp_path / "noray.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    line = next(i for i, text in enumerate(config.read_text().splitlines(), 1) if "address:" in text)
    expected = (
        f"{config}:{line}: execution.ray.address: nothing answers at '127.0.0.1:1' (Connection refused); expected "
        "host:port of a running Ray head (port 6379 by default), ray://host:port, 'auto' or ''"
    )
    started = time.monotonic()
    res = hq_here("run", str(config), cwd=tmp_path)
    assert res.returncode == 2 and res.stderr.strip() == f"error: {expected}", res.stdout + res.stderr
    assert time.monotonic() - started < 60
    res = hq_here("check", str(config), cwd=tmp_path)
    unwrapped = " ".join(res.stdout.split())  # rich wraps lines at 200 columns
    assert res.returncode == 0 and f"warning: {expected} from here; run refuses to start" in unwrapped
    assert not (tmp_path / "runs").exists()


def test_a_local_instance_that_lacks_a_stage_resource_is_told_at_once(tiny_config):
    """The local instance `run` starts gets no more nodes: no wait for one."""
    local = {"num_cpus": 2, "resource_wait": 600, "synth": {"resources": {"vivado": 1}}}
    cfg = tiny_config("local_typo", execution={**RAY, "ray": local})
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"^<config>: execution\.ray\.synth\.resources: no node .* has 'vivado'; its"):
        run_study(cfg)
    assert time.monotonic() - started < 300  # Ray's start included
