"""Work in a fresh process forked from a warm server: what both executors run a trial's stages in.

A new process per piece of work keeps Keras's state, thread pools and memory from leaking between
trials. It forks from a server that imported the Keras backend (JAX or TensorFlow), Keras, HGQ2 and alkaid
once (about 5 s saved per trial) and never ran an op, so each piece of work still sizes its own thread
pools, and JAX starts its threads only in the children. The local executor
keeps one server for the driver; on Ray each worker process keeps its own, so a node pays the imports
once per worker slot, not once per task.

Each forked process leads its own process group: whoever ends it (a timeout, a cancel) ends its whole
tree, synthesis tools included. It also ends that group itself when its server goes, which happens when
the server's parent (the driver, or the Ray worker) dies; see `forkserver_guard`.
"""

from __future__ import annotations

import atexit
import multiprocessing as mp
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable
from multiprocessing import forkserver
from multiprocessing.connection import Connection, wait
from typing import Any

from hqsearch.executors.base import error_text
from hqsearch.keras_backend import MODULES, KerasBackend

_server_backend: str | None = None  # the backend the fork server of this process was started for

PRELOAD = [
    "hqsearch.executors.forkserver_guard",
    "hqsearch.pipeline.trial",
    "hqsearch.search.hypervolume",  # the accuracy floor a training stops under; it brings Optuna's artifacts
    "keras",
    "hgq",
    "alkaid.converter",
    "matplotlib.figure",
    "sklearn.datasets",
    "hqsearch.executors.forkserver_warm",  # last: it maps the modules imported before it
]

# work(*args, on_stage) -> result, run in the forked process
Work = Callable[..., Any]


def context(backend: KerasBackend, also: tuple[str, ...] = ()) -> mp.context.ForkServerContext:
    """The fork server, started now with its Keras on `backend` and `also` imported before `PRELOAD`: what
    every child imports anyway belongs in the server, or each child pays for it. It imports in the
    background; the first fork waits for it.

    The server is one per process and takes this process's environment as it starts, so it starts with
    `KERAS_BACKEND` set for it alone; one that runs another backend (a second study in this process) is
    stopped first."""
    global _server_backend
    if _server_backend not in (None, backend):
        forkserver._forkserver._stop()  # the standard library's own way to stop it (its tests use it)
    ctx = mp.get_context("forkserver")
    keras_at = PRELOAD.index("keras")  # after the guard, which silences their start-up
    ctx.set_forkserver_preload([*also, *PRELOAD[:keras_at], *MODULES[backend], *PRELOAD[keras_at:]])
    before = os.environ.get("KERAS_BACKEND")
    os.environ["KERAS_BACKEND"] = backend
    try:
        forkserver.ensure_running()
    finally:
        if before is None:
            del os.environ["KERAS_BACKEND"]
        else:
            os.environ["KERAS_BACKEND"] = before
    _server_backend = backend
    return ctx


def _follow_parent() -> None:
    """End this process's whole group when its server dies (SIGKILL leaves no chance to clean up)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.killpg(0, signal.SIGKILL)

    threading.Thread(target=watch, daemon=True, name="follow-parent").start()


def _main(conn: Connection, env: dict[str, str], work: Work, args: tuple) -> None:
    os.environ.clear()  # the caller's environment now, not the server's from when it started
    os.environ.update(env)
    os.setsid()
    _follow_parent()
    try:
        conn.send(("done", work(*args, lambda stage: conn.send(("stage", stage)))))
    except BaseException as err:  # everything the work raises is that work's failure
        traceback.print_exc()
        conn.send(("error", error_text(err), traceback.format_exc()[-4000:]))
    finally:
        conn.close()


_live: set[Forked] = set()  # started (or starting) and not yet reaped or killed


@atexit.register  # after multiprocessing's own exit hook, which joins its children, so run before it
def _end_live() -> None:
    """Work still running when this process exits is killed, however the exit came about (a Ctrl-C during
    a start or between a start and its wait, an error): Python's exit would otherwise wait for it to end."""
    for f in list(_live):
        f.kill()


class Forked:
    """One piece of work in its forked process, and what it has said so far."""

    def __init__(self, ctx: mp.context.ForkServerContext, name: str, work: Work, args: tuple) -> None:
        self.conn, child = ctx.Pipe(duplex=False)
        self.process = ctx.Process(target=_main, args=(child, dict(os.environ), work, args), name=name)
        _live.add(self)  # first: a Ctrl-C that lands while it starts leaves a process that runs already
        self.process.start()
        child.close()
        self.stage, self.stage_started = "start", time.monotonic()
        self.done = False
        self.value: Any = None
        self.error: str | None = None  # "Type: message" of what the work raised, or how the process ended
        self.traceback: str | None = None

    def waitables(self) -> list:
        return [self.conn, self.process.sentinel]

    def read(self) -> None:
        """Take in what the process sent; a process that is gone without an answer is an error."""
        try:
            while not self.done and self.conn.poll():
                msg = self.conn.recv()
                if msg[0] == "stage":
                    self.stage, self.stage_started = msg[1], time.monotonic()
                elif msg[0] == "done":
                    self.done, self.value = True, msg[1]
                else:
                    self.done, self.error, self.traceback = True, msg[1], msg[2]
        except (EOFError, OSError):
            pass
        if not self.done and not self.process.is_alive():
            self.done, self.error = True, f"worker process exited with code {self.process.exitcode}"

    def finish(self) -> None:
        """Reap the process once it answered; one that does not exit in time is killed."""
        self.process.join(timeout=30)
        if self.process.is_alive():
            self.kill()
        _live.discard(self)
        self.conn.close()

    def kill(self) -> None:
        _live.discard(self)
        if self.process.pid is None:  # no pid came back from its start: a child made meanwhile ends with its server
            return
        try:
            if os.getpgid(self.process.pid) == self.process.pid:  # setsid done: the group is its own
                os.killpg(self.process.pid, signal.SIGKILL)
            else:
                self.process.kill()
        except (ProcessLookupError, PermissionError):
            pass
        self.process.join(timeout=10)

    def result(self) -> Any:
        """Block until the work is done; its value, or `WorkFailed`/`WorkerLost`. A wait that is interrupted
        (Ctrl-C, a cancelled Ray task) kills the work: no one is left to take its answer, and Python's exit
        would otherwise wait for it to end."""
        try:
            while not self.done:
                wait(self.waitables())
                self.read()
        except BaseException:
            self.kill()
            self.conn.close()
            raise
        self.finish()
        if self.error is None:
            return self.value
        if self.traceback is None:
            raise WorkerLost(self.error)
        raise WorkFailed(self.error, self.traceback)


class WorkFailed(Exception):
    """The work raised: args are its `Type: message` and its traceback."""


class WorkerLost(Exception):
    """The forked process died without an answer (killed, out of memory): worth a retry."""
