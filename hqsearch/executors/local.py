"""Trials in fresh worker processes on this machine, forked from one warm server (see `forked`).

Each worker leads its own process group: a stage that runs over its timeout is ended with its whole tree
(synthesis tools included), and a Ctrl-C at the terminal reaches only the driver.
"""

from __future__ import annotations

import os
import time
from multiprocessing.connection import wait

from hqsearch.config.schema import StudyConfig
from hqsearch.executors.base import SYNTH_GRACE, Finished, Job, check, work_job
from hqsearch.executors.forked import Forked, WorkerLost, context
from hqsearch.pipeline.preflight import TOOLS, Ready
from hqsearch.pipeline.trial import TrialOutcome


class LocalExecutor:
    name = "local"

    def __init__(self, cfg: StudyConfig) -> None:
        self.cfg = cfg
        self.ctx = context(cfg.execution.keras_backend)
        self.threads = max(1, (os.cpu_count() or 1) // cfg.execution.max_concurrent)
        self.timeouts = cfg.execution.timeouts.model_dump()
        self.running: dict[int, tuple[Job, Forked]] = {}

    def preflight(self) -> Ready:
        """Check data, model and tools in a worker forked from the warm server: the driver never imports Keras."""
        try:
            result = Forked(self.ctx, "preflight", check, (self.cfg, TOOLS, "on this machine")).result()
        except WorkerLost as err:
            raise RuntimeError(f"the preflight worker died ({err})") from None
        if isinstance(result, Exception):
            raise result
        return result

    def submit(self, job: Job) -> None:
        work = Forked(self.ctx, f"trial-{job.number}", work_job, (self.cfg, job, self.threads, None))
        self.running[job.number] = (job, work)

    def poll(self, timeout: float) -> list[Finished]:
        if not self.running:
            return []
        wait([w for _, f in self.running.values() for w in f.waitables()], timeout)
        finished = []
        now = time.monotonic()
        for number, (job, f) in list(self.running.items()):
            f.read()
            limit = self.timeouts.get(f.stage)
            grace = SYNTH_GRACE if f.stage == "synth" else 0.0
            if f.done:
                f.finish()
                outcome = f.value if f.error is None else TrialOutcome(error=f.error, info=_tb(f.traceback))
            elif limit is not None and now - f.stage_started > limit + grace:
                f.kill()
                f.conn.close()
                outcome = TrialOutcome(error=f"stage {f.stage!r} ran over its timeout of {limit:g} s; killed")
            else:
                continue
            del self.running[number]
            finished.append(Finished(job, outcome))
        return finished

    def cancel_all(self) -> list[Finished]:
        out = []
        for job, f in self.running.values():
            f.kill()
            f.conn.close()
            out.append(Finished(job, TrialOutcome(error=f"cancelled by the user during stage {f.stage!r}")))
        self.running.clear()
        return out

    def close(self) -> None:
        self.cancel_all()


def _tb(tb: str | None) -> dict:
    return {"traceback": tb} if tb else {}
