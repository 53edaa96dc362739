"""Runs one EDA tool and ends its whole process tree when the process that started it dies.

`run_tool` starts this file as a script (standard library only, no hqsearch import) in a new process
group: `python toolguard.py PARENT_PID TOOL ARGS...`. The guard starts a watcher and the tool in that
group, and the whole group is killed (the tool and everything it started: Vivado forks its own
workers) when either guard notices its parent is gone, through the kernel's parent-death signal
(Linux `PR_SET_PDEATHSIG`) or a thread that watches the parent pid.

Two guards, because a parent may kill its direct children with SIGKILL as it exits (Ray does, for a
worker whose task was cancelled): then the first guard dies without a word, and the watcher, its own
child, sees it go and ends the group. When the tool exits by itself, the first guard kills whatever
the tool left running in the group and the watcher, reaps the watcher, and returns the tool's code.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time

PR_SET_PDEATHSIG = 1


def _end_group(*_: object) -> None:
    os.killpg(0, signal.SIGKILL)  # the tool's tree, and the guards with it


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    _end_group()


def _arm(parent: int) -> None:
    """End the group when `parent` dies, or if it has died already."""
    signal.signal(signal.SIGTERM, _end_group)
    signal.signal(signal.SIGHUP, _end_group)
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    threading.Thread(target=_watch, args=(parent,), daemon=True).start()


def main(argv: list[str]) -> int:
    if argv[0] == "--watch":
        _arm(int(argv[1]))
        while True:
            signal.pause()
    parent, tool = int(argv[0]), argv[1:]
    _arm(parent)
    watcher = subprocess.Popen([sys.executable, "-I", "-S", __file__, "--watch", str(os.getpid())])
    proc = subprocess.Popen(tool)  # same group, same output, cwd and environment as the guard
    code = proc.wait()
    _end_the_rest(watcher)
    return 128 - code if code < 0 else code  # a signal, as a shell reports it


def _end_the_rest(watcher: subprocess.Popen) -> None:
    """The tool is done: kill what it left running in the group, then the watcher, and reap the watcher
    here, so nothing is handed to an init that may not reap (a container's PID 1)."""
    me = os.getpid()
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if entry.isdigit() and int(entry) not in (me, watcher.pid):
            try:
                if os.getpgid(int(entry)) == me:
                    os.kill(int(entry), signal.SIGKILL)
            except OSError:
                continue
    watcher.kill()
    watcher.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
