"""Work in processes forked from a warm server: none outlives the process that started it, and each inherits
what the server prepared."""

from __future__ import annotations

import subprocess
import sys
import time

from helpers import ended, paths_resolved_building_a_layer

from hqsearch.executors.forked import Forked, context

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
