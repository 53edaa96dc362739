"""Imported first by the local executor's fork server (as a preload): end the server when its driver
dies, and keep the noise of importing the Keras backend off the driver's terminal.

A SIGKILLed driver cannot stop its fork server, which would then hold its memory forever.
The watch thread only sleeps and reads the parent pid, so it holds no lock a fork could copy. Each
worker sends its own output to its trial's log.
"""

from __future__ import annotations

import os
import sys
import threading
import time


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


if "multiprocessing.forkserver" in sys.modules and sys.argv[:1] == ["-c"]:  # inside the fork server only
    threading.Thread(target=_watch, args=(os.getppid(),), daemon=True, name="follow-driver").start()
    _null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(_null, 1)
    os.dup2(_null, 2)
