"""A synthesis tool never outlives its trial: real Yosys (native and yowasp), ended every way a trial ends.

Each test starts a trial whose design keeps Yosys busy for half a minute or more, waits until a Yosys process
runs in that trial's folder, ends the trial (stage timeout, driver SIGKILL, a second Ctrl-C, a Ray task
cancelled or timed out, the Ray worker killed) and then checks by pid that no process of the tool is
left: neither the tool nor the guard that started it.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from conftest import needs_native_yosys, tiny_raw
from helpers import parent_of, process_alive, start_driver
from optuna.trial import TrialState
from test_faults import wait_for

from hqsearch.config.schema import parse_config
from hqsearch.driver import run_study
from hqsearch.study.storage import load_existing

# A stage timeout ends each Yosys build, each on one Keras backend. A driver's SIGKILL and a second Ctrl-C end
# the tool through the trial's process group, whichever build it is: each runs with yowasp, SIGKILL on the
# other Keras backend.
TIMEOUT_ON = [pytest.param("native", "tensorflow", marks=needs_native_yosys), ("yowasp", "jax")]


def busy_yosys_raw(out: Path, name: str, yosys: str, backend: str = "jax", **sections) -> dict:
    """One trial of a 64-16-10 network after one epoch at tiny beta: Yosys needs half a minute or more for it
    (native Yosys about 30 s on one core, yowasp longer), and every test ends it within seconds."""
    raw = tiny_raw(
        out,
        name,
        study={"n_trials": 1},
        model={"widths": [16]},
        training={"epochs": 1},
        search_space={"beta": 1e-7, "heterogeneity": {"weights": ["intra"], "activations": ["intra"]}},
        synthesis={"backend": "yosys", "yosys": yosys, "cache": False},
        execution={"max_concurrent": 1, "max_failures": 1, "keras_backend": backend},
    )
    for key, value in sections.items():
        raw.setdefault(key, {}).update(value)
    return raw


def tool_pids(root: Path) -> set[int]:
    """Processes that run inside `root` and whose command line names yosys or the guard (tool and guards)."""
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            if (b"yosys" in cmdline or b"toolguard" in cmdline) and os.readlink(proc / "cwd").startswith(str(root)):
                found.add(int(proc.name))
        except OSError:
            continue
    return found


class Watcher:
    """Samples the tool's processes in the background, so even a short-lived one is seen."""

    def __init__(self, root: Path) -> None:
        self.root, self.seen, self._stop = root, set(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.seen |= tool_pids(self.root)
            time.sleep(0.2)

    def wait_for_tool(self, timeout: float = 240) -> set[int]:
        wait_for(lambda: self.seen, timeout, "Yosys to start")
        time.sleep(1.0)  # let it get going
        return set(self.seen)

    def assert_all_gone(self, within: float = 10) -> None:
        self._stop.set()
        self._thread.join()
        assert self.seen, "no Yosys process was ever seen: nothing was tested"
        deadline = time.monotonic() + within
        while (left := [p for p in self.seen if process_alive(p)]) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not left, f"tool processes outlived their trial: {left}"


@pytest.mark.parametrize(("yosys", "backend"), TIMEOUT_ON)
def test_stage_timeout_ends_the_tool(yosys, backend, tmp_path):
    cfg = parse_config(busy_yosys_raw(tmp_path, "timeout", yosys, backend, execution={"timeouts": {"synth": 4}}))
    watcher = Watcher(tmp_path)
    assert run_study(cfg).complete == 0
    watcher.assert_all_gone()
    (t,) = load_existing(cfg.study.storage_url, "timeout").trials
    assert t.state == TrialState.FAIL
    assert "ran over its timeout" in t.user_attrs["error"] and "yosys" in t.user_attrs["error"]


def driver_running_yosys(tmp_path: Path, name: str, yosys: str, backend: str = "jax"):
    """`hqsearch run` in its own process, returned once its trial's Yosys runs."""
    driver = start_driver(tmp_path, busy_yosys_raw(tmp_path / "out", name, yosys, backend))
    watcher = Watcher(tmp_path / "out")
    watcher.wait_for_tool()
    return driver, watcher


def test_driver_sigkill_ends_the_tool(tmp_path):
    driver, watcher = driver_running_yosys(tmp_path, "killed", "yowasp", "tensorflow")
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    watcher.assert_all_gone()


def test_second_ctrl_c_ends_the_tool(tmp_path):
    driver, watcher = driver_running_yosys(tmp_path, "interrupted", "yowasp")
    driver.send_signal(signal.SIGINT)
    time.sleep(0.5)
    driver.send_signal(signal.SIGINT)
    assert driver.wait(timeout=60) == 130  # interrupted, as a shell reports Ctrl-C
    watcher.assert_all_gone()
    url = f"sqlite:///{tmp_path / 'out' / 'study.db'}"
    (t,) = load_existing(url, "interrupted").trials
    assert t.state == TrialState.FAIL and "cancelled by the user" in t.user_attrs["error"]


def ray_cfg(tmp_path: Path, name: str, yosys: str, **execution):
    ex = {"executor": "ray", "ray": {"num_cpus": 2, "max_retries": 0}, **execution}
    return parse_config(busy_yosys_raw(tmp_path, name, yosys, execution=ex))


def submit_one(cfg, watcher: Watcher):
    """One trial on the Ray executor, polled until its synth task runs Yosys; returns the executor and pids."""
    from hqsearch.executors import TrialJob
    from hqsearch.executors.ray import RayExecutor
    from hqsearch.search.space import TrialParams

    widths = tuple(cfg.model.widths)  # the network `busy_yosys_raw` gives its study
    params = TrialParams(beta=1e-7, l1=0, l2=0, weights="intra", activations="intra", learning_rate=3e-3, widths=widths)
    executor = RayExecutor(cfg)
    executor.submit(TrialJob(0, params, cfg.study.run_dir / "trials" / "00000", 0))
    deadline = time.monotonic() + 240
    while not watcher.seen and time.monotonic() < deadline:
        executor.poll(timeout=0.5)  # moves the trial from its train task to its synth task
    return executor, watcher.wait_for_tool()


# On Ray the same kill path ends either tool (the local tests above run both): each Ray way of ending a
# trial runs with one tool, and both tools are covered.
@needs_native_yosys
def test_ray_task_cancelled_ends_the_tool(tmp_path, ray_instance, yosys="native"):
    watcher = Watcher(tmp_path)
    executor, _ = submit_one(ray_cfg(tmp_path, "ray_cancel", yosys), watcher)
    (done,) = executor.cancel_all()
    executor.close()
    assert "cancelled by the user during stage 'synth'" in done.outcome.error
    watcher.assert_all_gone()


def test_ray_stage_timeout_ends_the_tool(tmp_path, ray_instance, yosys="yowasp"):
    cfg = ray_cfg(tmp_path, "ray_timeout", yosys, timeouts={"synth": 4})
    watcher = Watcher(tmp_path)
    assert run_study(cfg).complete == 0
    watcher.assert_all_gone()
    (t,) = load_existing(cfg.study.storage_url, "ray_timeout").trials
    assert t.state == TrialState.FAIL and "ran over its timeout" in t.user_attrs["error"]


def test_ray_worker_killed_ends_the_tool(tmp_path, ray_instance, yosys="yowasp"):
    watcher = Watcher(tmp_path)
    executor, pids = submit_one(ray_cfg(tmp_path, "ray_killed", yosys), watcher)
    workers = {parent_of(p) for p in pids} - pids  # the synth task's worker started the guard
    assert len(workers) == 1
    os.kill(workers.pop(), signal.SIGKILL)
    finished, deadline = [], time.monotonic() + 120
    while not finished and time.monotonic() < deadline:
        finished = executor.poll(timeout=1.0)
    executor.close()
    assert "synth task lost" in finished[0].outcome.error
    watcher.assert_all_gone()


@needs_native_yosys
def test_ray_a_design_over_its_timeout_fails_alone(tmp_path, ray_instance, yosys_standin):
    """As locally, each design of a synth task has the synth timeout of its own: the first candidate hangs
    and is killed at the limit, while the final design and the next candidate, each slower than the
    grace the whole task used to get beyond one limit, are measured and kept."""
    marker = tmp_path / "slow.json"
    yosys_standin.slow("/harvest/", marker, delay=5.0)  # each other design: longer than the grace
    raw = tiny_raw(
        tmp_path,
        "ray_slow_design",
        study={"n_trials": 1},
        training={"epochs": 10, "harvest": {"max_candidates": 2}},
        search_space={"beta": {"low": 3e-4, "high": 1e-3, "log": True}, "init_weight_bits": 3, "init_act_bits": 3},
        synthesis={"backend": "yosys", "yosys": "native", "cache": False, "fidelity": "all"},
        execution={
            "executor": "ray",
            "max_concurrent": 1,
            "max_failures": 1,
            "ray": {"max_retries": 0},
            "timeouts": {"synth": 30},  # a real Yosys run of seconds, three times as long on a busy machine
        },
    )
    cfg = parse_config(raw)
    watcher = Watcher(tmp_path)
    try:
        summary = run_study(cfg)
    finally:
        yosys_standin.clear()
    watcher.assert_all_gone()
    study = load_existing(cfg.study.storage_url, "ray_slow_design")
    (training,) = [t for t in study.trials if "parent" not in t.user_attrs]
    assert training.state == TrialState.COMPLETE, training.user_attrs.get("error")
    assert training.user_attrs["sources"]["luts"].startswith("yosys")
    harvest = training.user_attrs["info"]["harvest"]
    assert harvest["candidates"] == 2, "the training must harvest two candidates for this test"
    slow = json.loads(marker.read_text())
    assert slow["pid"] in watcher.seen  # the hung design's tool was seen, and is gone
    epoch = int(Path(slow["cwd"]).parent.name.removeprefix("epoch_"))
    (error,) = harvest["errors"]
    assert error.startswith(f"epoch {epoch}: SynthError: yosys ran over its timeout of")
    (kept,) = [t for t in study.trials if t.user_attrs.get("parent") == training.number]
    assert kept.state == TrialState.COMPLETE and kept.user_attrs["epoch"] != epoch
    assert kept.user_attrs["sources"]["luts"].startswith("yosys") and kept.user_attrs["metrics"]["luts"] > 0
    assert summary.complete == 1 and summary.harvested == 1
