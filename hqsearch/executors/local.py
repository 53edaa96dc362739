"""Trials in fresh worker processes on this machine.

A new process per trial keeps TensorFlow's graph, thread pools and memory from leaking between
trials. They fork from a server that imported TensorFlow, Keras, HGQ2 and da4ml once (about 5 s
saved per trial) and never ran an op, so each trial still sizes its own thread pools. Each worker
leads its own process group: a stage that runs over its timeout is ended with its whole tree
(synthesis tools included), and a Ctrl-C at the terminal reaches only the driver.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait

from ..config import StudyConfig
from ..preflight import Ready
from ..trial import TrialOutcome
from .base import SYNTH_GRACE, Finished, Job, error_text, prepare_worker, run_job

PRELOAD = [
    "hqsearch.executors.forkserver_guard",
    "hqsearch.trial",
    "tensorflow",
    "keras",
    "hgq",
    "da4ml.converter",
    "sklearn.datasets",
]


def _follow_parent() -> None:
    """End this worker's whole group when the driver dies (SIGKILL leaves no chance to clean up)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.killpg(0, signal.SIGKILL)

    threading.Thread(target=watch, daemon=True, name="follow-parent").start()


def _worker(conn: Connection, cfg: StudyConfig, job: Job, threads: int, env: dict[str, str]) -> None:
    os.environ.clear()  # the driver's environment now, not the fork server's from when it started
    os.environ.update(env)
    os.setsid()
    _follow_parent()
    try:
        prepare_worker(job.trial_dir, threads)
        outcome = run_job(cfg, job, lambda s: conn.send(("stage", s)))
        conn.send(("done", outcome))
    except BaseException as err:  # everything a trial raises is that trial's failure
        traceback.print_exc()
        conn.send(("error", error_text(err), traceback.format_exc()[-4000:]))
    finally:
        conn.close()


def _preflight(conn: Connection, cfg: StudyConfig, env: dict[str, str]) -> None:
    os.environ.clear()
    os.environ.update(env)
    try:
        from ..preflight import preflight

        conn.send(("ok", preflight(cfg)))
    except Exception as err:  # a ConfigError for the user, or a bug: either way the driver raises it
        conn.send(("error", err))
    finally:
        conn.close()


@dataclass
class _Running:
    job: Job
    process: mp.process.BaseProcess
    conn: Connection
    stage: str = "start"
    stage_started: float = field(default_factory=time.monotonic)
    result: TrialOutcome | None = None


class LocalExecutor:
    name = "local"

    def __init__(self, cfg: StudyConfig) -> None:
        self.cfg = cfg
        self.ctx = mp.get_context("forkserver")
        # one server imports TensorFlow and friends once; every trial forks from it, fresh but warm
        self.ctx.set_forkserver_preload(PRELOAD)
        self.threads = max(1, (os.cpu_count() or 1) // cfg.execution.max_concurrent)
        self.timeouts = cfg.execution.timeouts.model_dump()
        self.running: dict[int, _Running] = {}

    def preflight(self) -> Ready:
        """Check data and model in a worker forked from the warm server: the driver never imports TensorFlow."""
        parent, child = self.ctx.Pipe(duplex=False)
        p = self.ctx.Process(target=_preflight, args=(child, self.cfg, dict(os.environ)), name="preflight")
        p.start()
        child.close()
        try:
            kind, value = parent.recv()
        except EOFError:
            raise RuntimeError(f"the preflight worker died (exit code {p.exitcode})") from None
        finally:
            p.join()
            parent.close()
        if kind == "error":
            raise value
        return value

    def submit(self, job: Job) -> None:
        parent, child = self.ctx.Pipe(duplex=False)
        p = self.ctx.Process(
            target=_worker, args=(child, self.cfg, job, self.threads, dict(os.environ)), name=f"trial-{job.number}"
        )
        p.start()
        child.close()
        self.running[job.number] = _Running(job, p, parent)

    def poll(self, timeout: float) -> list[Finished]:
        if not self.running:
            return []
        ready = wait(
            [r.conn for r in self.running.values()] + [r.process.sentinel for r in self.running.values()], timeout
        )
        for r in self.running.values():
            if r.conn in ready:
                self._read(r)
        finished = []
        now = time.monotonic()
        for number, r in list(self.running.items()):
            limit = self.timeouts.get(r.stage)
            grace = SYNTH_GRACE if r.stage == "synth" else 0.0
            if r.result is None and limit is not None and now - r.stage_started > limit + grace:
                self._kill(r)
                r.result = TrialOutcome(error=f"stage {r.stage!r} ran over its timeout of {limit:g} s; killed")
            if r.result is None and not r.process.is_alive():
                self._read(r)
                if r.result is None:
                    r.result = TrialOutcome(error=f"worker process exited with code {r.process.exitcode}")
            if r.result is not None:
                r.process.join(timeout=30)
                if r.process.is_alive():
                    self._kill(r)
                r.conn.close()
                del self.running[number]
                finished.append(Finished(r.job, r.result))
        return finished

    def cancel_all(self) -> list[Finished]:
        out = []
        for r in self.running.values():
            self._kill(r)
            r.conn.close()
            out.append(Finished(r.job, TrialOutcome(error=f"cancelled by the user during stage {r.stage!r}")))
        self.running.clear()
        return out

    def close(self) -> None:
        self.cancel_all()

    def _read(self, r: _Running) -> None:
        try:
            while r.conn.poll():
                msg = r.conn.recv()
                if msg[0] == "stage":
                    r.stage, r.stage_started = msg[1], time.monotonic()
                elif msg[0] == "done":
                    r.result = msg[1]
                else:
                    r.result = TrialOutcome(error=msg[1], info={"traceback": msg[2]})
        except (EOFError, OSError):
            pass

    def _kill(self, r: _Running) -> None:
        try:
            if os.getpgid(r.process.pid) == r.process.pid:  # setsid done: the group is the worker's own
                os.killpg(r.process.pid, signal.SIGKILL)
            else:
                r.process.kill()
        except (ProcessLookupError, PermissionError):
            pass
        r.process.join(timeout=10)
