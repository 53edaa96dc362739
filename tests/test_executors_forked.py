"""Work in processes forked from a warm server: none outlives the process that started it."""

from __future__ import annotations

import subprocess
import sys
import time

from helpers import ended

_EXITS_BEFORE_ITS_WAIT = """
import multiprocessing
import helpers
from hqsearch.executors.forked import Forked

work = Forked(multiprocessing.get_context("forkserver"), "held", helpers.hold, (60,))
print(work.process.pid, flush=True)
raise KeyboardInterrupt  # a Ctrl-C between the start and the wait for its answer
"""


def test_work_still_running_when_its_starter_exits_is_killed_not_waited_for():
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", _EXITS_BEFORE_ITS_WAIT], capture_output=True, text=True, timeout=50)
    assert "KeyboardInterrupt" in done.stderr, done.stderr
    assert time.monotonic() - started < 30  # multiprocessing's exit would have joined it for 60 s
    assert ended(int(done.stdout.split()[0]), within=5)
