"""Runs one EDA tool and ends its whole process tree when the process that started it dies.

`run_tool` starts this file as a script (standard library only, no hqsearch import) in a new process
group: `python toolguard.py PARENT_PID TOOL ARGS...`. It asks the kernel for SIGTERM when its parent
dies (Linux `PR_SET_PDEATHSIG`; elsewhere a thread watches the parent pid), starts the tool in its own
group, and on that signal kills the group: the tool and everything the tool started (Vivado forks its
own workers). So a trial's tool never outlives the trial, however the trial's worker ended: a stage
timeout, a SIGKILLed driver, a second Ctrl-C, a cancelled Ray task or a Ray worker that died.
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
    os.killpg(0, signal.SIGKILL)  # the tool's tree and this guard with it


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    _end_group()


def main(argv: list[str]) -> int:
    parent, tool = int(argv[0]), argv[1:]
    signal.signal(signal.SIGTERM, _end_group)
    signal.signal(signal.SIGHUP, _end_group)
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    threading.Thread(target=_watch, args=(parent,), daemon=True).start()  # also covers a death before prctl
    if os.getppid() != parent:
        return 1
    proc = subprocess.Popen(tool)  # same group, same output, cwd and environment as the guard
    code = proc.wait()
    return 128 - code if code < 0 else code  # a signal, as a shell reports it


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
