"""Work in processes forked from a warm server: none outlives the process that started it, each inherits
what the server prepared, and a process that ended its work cleanly takes later work of its key as a fresh
process would."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from conftest import tiny_raw
from helpers import ended, paths_resolved_building_a_layer, pid_and_cwd, pid_and_layer_name, raises

from hqsearch.config.schema import parse_config
from hqsearch.executors.base import TrialJob, runtime, work_job
from hqsearch.executors.forked import Forked, WorkFailed, context, release_idle
from hqsearch.search.space import TrialParams

_EXITS_BEFORE_ITS_WAIT = """
import multiprocessing
import helpers
from hqsearch.executors.forked import Forked

work = Forked(multiprocessing.get_context("forkserver"), "held", helpers.hold, (60,))
print(work.process.pid, flush=True)
raise KeyboardInterrupt  # a Ctrl-C between the start and the wait for its answer
"""


def killed_at_exit(script: str) -> None:
    """`script` prints the pid of its 60 s work and exits by a KeyboardInterrupt: the work is killed, not
    waited for."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=50)
    assert "KeyboardInterrupt" in done.stderr, done.stderr
    assert time.monotonic() - started < 30  # multiprocessing's exit would have joined it for 60 s
    assert ended(int(done.stdout.split()[0]), within=5)


def test_work_still_running_when_its_starter_exits_is_killed_not_waited_for():
    killed_at_exit(_EXITS_BEFORE_ITS_WAIT)


_INTERRUPTED_IN_ITS_START = """
import multiprocessing
import helpers
from hqsearch.executors.forked import Forked

ctx = multiprocessing.get_context("forkserver")
ctx.Process = helpers.StartInterrupted  # the child runs; the Ctrl-C lands before Forked has its object
Forked(ctx, "held", helpers.hold, (60,))
"""


def test_work_whose_start_is_interrupted_is_killed_not_waited_for():
    """A Ctrl-C can land while `run` starts its preflight, whose data function then already runs."""
    killed_at_exit(_INTERRUPTED_IN_ITS_START)


_SEES_ITS_CALLERS_ENVIRONMENT = """
import multiprocessing, os
from multiprocessing import forkserver
import helpers
from hqsearch.executors.forked import Forked

forkserver.ensure_running()  # the server starts without the variable
os.environ["CUDA_VISIBLE_DEVICES"] = "1"  # as Ray sets it for a task given a GPU, in a worker whose server runs
work = Forked(multiprocessing.get_context("forkserver"), "env", helpers.environment_value, ("CUDA_VISIBLE_DEVICES",))
print(work.result())
"""


def test_work_sees_its_callers_environment_not_the_servers():
    """A stage on Ray runs in a process forked from the worker's server, which started before the task: it
    must see the GPUs Ray gave the task, not the server's environment from its start."""
    done = subprocess.run([sys.executable, "-c", _SEES_ITS_CALLERS_ENVIRONMENT], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1"]


def test_a_worker_inherits_the_module_map_its_server_made():
    """HGQ2's layers inspect their caller's frame; the first time in a process that maps every imported module
    to its file (thousands of paths resolved, about 0.4 s): the server maps them once for all its workers."""
    resolved = Forked(context("jax"), "layer", paths_resolved_building_a_layer, ()).result()
    assert resolved < 100, f"a worker resolved {resolved} paths to make one layer"


def test_a_process_that_ended_cleanly_takes_the_next_work_of_its_key_and_one_that_failed_ends():
    ctx = context("jax")
    try:
        first = Forked(ctx, "first", pid_and_layer_name, (), reuse="a").result()
        again = Forked(ctx, "again", pid_and_layer_name, (), reuse="a").result()
        other = Forked(ctx, "other", pid_and_layer_name, (), reuse="b").result()
        assert again == first  # the same process, its Keras cleared: layer names start again, as when fresh
        assert first[1] == "dense" and other[0] != first[0]
        with pytest.raises(WorkFailed, match="this work fails"):
            Forked(ctx, "fails", raises, (), reuse="a").result()
        assert ended(first[0], within=5)  # the process whose work failed takes no more
        assert Forked(ctx, "after", pid_and_layer_name, (), reuse="a").result()[0] != first[0]
    finally:
        release_idle()


def test_a_process_that_takes_more_work_runs_it_where_its_caller_is(tmp_path, monkeypatch):
    ctx = context("jax")
    try:
        first = Forked(ctx, "here", pid_and_cwd, (), reuse="cwd").result()
        monkeypatch.chdir(tmp_path)
        assert Forked(ctx, "there", pid_and_cwd, (), reuse="cwd").result() == (first[0], str(tmp_path))
    finally:
        release_idle()


def test_a_trial_in_a_process_that_ran_another_is_the_trial_a_fresh_process_runs(tmp_path):
    cfg = parse_config(tiny_raw(tmp_path, "reused"))
    common = {"l1": 0.0, "l2": 0.0, "activations": "intra", "epochs": 3}
    earlier = TrialParams(beta=1e-5, weights="intra", learning_rate=5e-3, widths=(8,), **common)
    trial = TrialParams(beta=3e-5, weights="per_channel", learning_rate=4e-3, widths=(12,), **common)
    ctx, key = context("jax"), runtime(cfg, 1)

    def run(number: int, params: TrialParams, reuse=None):
        job = TrialJob(number, params, tmp_path / "trials" / str(number), seed=7)
        return Forked(ctx, f"trial-{number}", work_job, (cfg, job, 1, None), reuse).result()

    try:
        fresh = run(0, trial)
        before = run(1, earlier, key)
        reused = run(2, trial, key)
    finally:
        release_idle()
    assert reused.info["train_pid"] == before.info["train_pid"] != fresh.info["train_pid"]
    assert reused.error is None and reused.metrics == fresh.metrics
    assert reused.info["final_loss"] == fresh.info["final_loss"]
