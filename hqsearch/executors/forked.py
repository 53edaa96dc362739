"""Work in a process forked from a warm server: what both executors run a trial's stages in.

A process forks from a server that imported the Keras backend (JAX or TensorFlow), Keras, HGQ2 and alkaid
once (about 5 s saved per trial) and never ran an op, so each process sizes its own thread pools, and JAX
starts its threads only in the children. The local executor keeps one server for the driver; on Ray each
worker process keeps its own, so a node pays the imports once per worker slot, not once per task.

A process that finished its work cleanly may take the next piece of work with the same `reuse` key (the
settings a process cannot change once its backend runs: threads, compile cache) and the same variables the
runtimes read as they start (`RUNTIME_VARIABLES`): its backend's runtime and the small programs it compiled
stay warm, about a third of a small trial's CPU. Keras's state is cleared between pieces of work. A process
that failed, was killed or did `REUSES` pieces ends instead, so nothing a broken or long-lived process holds
reaches a later trial, as does one that computed on a GPU: idle, it would hold GPU memory the next trainings
need.

Each forked process leads its own process group: whoever ends it (a timeout, a cancel) ends its whole
tree, synthesis tools included. It also ends that group itself when its server goes, which happens when
the server's parent (the driver, or the Ray worker) dies; see `forkserver_guard`.
"""

from __future__ import annotations

import multiprocessing as mp
import multiprocessing.util
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Hashable
from multiprocessing import forkserver
from multiprocessing.connection import Connection, wait
from typing import Any

from hqsearch.executors.base import error_text
from hqsearch.keras_backend import MODULES, KerasBackend, holds_gpu

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

REUSES = 16  # pieces of work one process takes at most: bounds what it accumulates (memory, compiled programs)


def context(backend: KerasBackend, also: tuple[str, ...] = ()) -> mp.context.ForkServerContext:
    """The fork server, started now with its Keras on `backend` and `also` imported before `PRELOAD`: what
    every child imports anyway belongs in the server, or each child pays for it. It imports in the
    background; the first fork waits for it.

    The server is one per process and takes this process's environment as it starts, so it starts with
    `KERAS_BACKEND` set for it alone; one that runs another backend (a second study in this process) is
    stopped first."""
    global _server_backend
    if _server_backend not in (None, backend):
        release_idle()
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


def _main(conn: Connection, env: dict[str, str], cwd: str, work: Work, args: tuple, reusable: bool) -> None:
    os.setsid()
    _follow_parent()
    for done in range(1, REUSES + 1):
        os.environ.clear()  # the caller's environment now, not the server's from when it started
        os.environ.update(env)
        os.chdir(cwd)  # and its working directory, where relative paths in the work are meant from
        try:
            value = work(*args, lambda stage: conn.send(("stage", stage)))
        except BaseException as err:  # everything the work raises is that work's failure
            traceback.print_exc()
            conn.send(("error", error_text(err), traceback.format_exc()[-4000:]))
            break
        stays = reusable and done < REUSES and not holds_gpu()  # an idle process would hold its GPU memory
        conn.send(("done", value, stays))
        if not stays:
            break
        _between_works()
        try:
            env, cwd, work, args = conn.recv()
        except (EOFError, OSError):  # its caller is gone
            break
    conn.close()


def _between_works() -> None:
    """What one piece of work leaves that the next must not find: its log as this process's output, and
    Keras's global state (layer names, seeds)."""
    sys.stdout.flush()
    sys.stderr.flush()
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    os.close(null)
    if "keras" in sys.modules:
        import keras

        keras.backend.clear_session()


# The environment variables a backend's runtime reads once, as it starts (thread pools, devices, XLA's flags,
# memory): a process takes more work only where they are the same. The others are read where they are used,
# and each piece of work gets its caller's whole environment.
RUNTIME_VARIABLES = ("XLA_", "JAX_", "TF_", "CUDA_", "NVIDIA_", "OMP_", "MKL_", "OPENBLAS_", "KERAS_", "LD_")


def _runtime_environment(env: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in env.items() if k.startswith(RUNTIME_VARIABLES)))


_live: set[Forked] = set()  # started (or starting) and not yet reaped or killed
# processes that finished their work cleanly and wait for more: (key, process, its pipe), oldest first; at most
# one per core, which the trials that left them were using anyway
_idle: list[tuple[Hashable, mp.process.BaseProcess, Connection]] = []
IDLE = os.cpu_count() or 1


def _end_all() -> None:
    """Work still running when this process exits is killed, however the exit came about (a Ctrl-C during
    a start or between a start and its wait, an error), and the processes that wait for work end: Python's
    exit would otherwise wait for them to end."""
    for f in list(_live):
        f.kill()
    release_idle()


# multiprocessing runs these before it joins its children: at a normal exit (its `atexit` hook) and at the
# end of a process it started itself, where `atexit` does not run
mp.util.Finalize(None, _end_all, exitpriority=100)


def release_idle(keep: int = 0) -> None:
    """End the processes that wait for work, but the newest `keep`."""
    while len(_idle) > keep:
        _, process, conn = _idle.pop(0)
        _end(process)
        conn.close()


def _end(process: mp.process.BaseProcess) -> None:
    """SIGKILL a forked process's group (its tools too), or the process where it leads no group yet."""
    if process.pid is None:  # no pid came back from its start: a child made meanwhile ends with its server
        return
    try:
        if os.getpgid(process.pid) == process.pid:  # setsid done: the group is its own
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
    except (ProcessLookupError, PermissionError):
        pass
    process.join(timeout=10)


class Forked:
    """One piece of work in its forked process, and what it has said so far. With `reuse`, the process may
    be one that finished earlier work of the same key and environment, and may take later work."""

    def __init__(
        self, ctx: mp.context.ForkServerContext, name: str, work: Work, args: tuple, reuse: Hashable | None = None
    ) -> None:
        env = dict(os.environ)
        self.key = None if reuse is None else (_server_backend, reuse, _runtime_environment(env))
        self.stays = False  # whether the process said it takes more work
        if not self._hand_to_idle(env, work, args):
            self.conn, child = ctx.Pipe()
            reusable = self.key is not None
            main = (child, env, os.getcwd(), work, args, reusable)
            self.process = ctx.Process(target=_main, args=main, name=name)
            _live.add(self)  # first: a Ctrl-C that lands while it starts leaves a process that runs already
            self.process.start()
            child.close()
        self.stage, self.stage_started = "start", time.monotonic()
        self.done = False
        self.value: Any = None
        self.error: str | None = None  # "Type: message" of what the work raised, or how the process ended
        self.traceback: str | None = None

    def _hand_to_idle(self, env: dict[str, str], work: Work, args: tuple) -> bool:
        """Hand this work to an idle process of this key, the newest first; False where none took it."""
        for i in reversed(range(len(_idle)) if self.key is not None else ()):
            if _idle[i][0] != self.key:
                continue
            _, self.process, self.conn = _idle.pop(i)
            _live.add(self)  # first: a Ctrl-C that lands once it has the work leaves a process that runs it
            try:
                if self.process.is_alive():
                    self.conn.send((env, os.getcwd(), work, args))
                    return True
            except OSError:  # it went while idle
                pass
            self.kill()
            self.conn.close()
        return False

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
                    self.done, self.value, self.stays = True, msg[1], msg[2]
                else:
                    self.done, self.error, self.traceback = True, msg[1], msg[2]
        except (EOFError, OSError):
            pass
        if not self.done and not self.process.is_alive():
            self.done, self.error = True, f"worker process exited with code {self.process.exitcode}"

    def finish(self) -> None:
        """Once it answered: a process that takes more work waits for it; any other is reaped, and one
        that does not exit in time is killed."""
        if self.stays and self.process.is_alive():
            _live.discard(self)
            _idle.append((self.key, self.process, self.conn))
            release_idle(keep=IDLE)
            return
        self.process.join(timeout=30)
        if self.process.is_alive():
            self.kill()
        _live.discard(self)
        self.conn.close()

    def kill(self) -> None:
        _live.discard(self)
        _end(self.process)

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
