"""Trials on a Ray cluster: training and synthesis as separate tasks with their own resources.

The training task (stages `train` and `firmware`) asks for `execution.ray.train`, the synthesis task
for `execution.ray.synth`, so synthesis goes only to nodes started with e.g.
`ray start --resources='{"vivado": 1}'`, and one trial's synthesis runs while the next ones train.
Every task runs in a fresh worker process (`max_calls=1`): TensorFlow's thread pools are sized from
the task's CPUs before its first op, and the task's memory goes back when it ends. A worker or node
that dies is retried `max_retries` times by Ray; an exception in the trial is not retried.

On Ray a stage's timeout counts from the task's submission, time spent waiting for resources included.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field

from ..config import RayStage, StudyConfig
from ..preflight import Ready
from ..trial import Trained, TrialOutcome
from .base import SYNTH_GRACE, Finished, Job, SynthJob, TrialJob, error_text, prepare_worker, run_job


def _train_task(cfg: StudyConfig, job: TrialJob, threads: int, with_bytes: bool) -> Trained:
    prepare_worker(job.trial_dir, threads)
    (job.trial_dir / "train.pid").write_text(str(os.getpid()))
    from ..trial import train_stage

    trained = train_stage(cfg, job.params, job.trial_dir, job.seed, start_from=job.start_from)
    trained.outcome.info["train_host"] = socket.gethostname()
    return trained.portable(with_bytes)


def _synth_task(cfg: StudyConfig, job: TrialJob, trained: Trained, threads: int) -> TrialOutcome:
    from ..synth import uses_hls4ml
    from ..trial import synth_stage

    prepare_worker(job.trial_dir, threads, tensorflow=uses_hls4ml(cfg.synthesis))

    trained.outcome.info["synth_host"] = socket.gethostname()
    return synth_stage(cfg, job.params, trained, job.trial_dir, gate=job.gate)


def _later_task(cfg: StudyConfig, job: SynthJob, threads: int, model_bytes: bytes | None) -> TrialOutcome:
    prepare_worker(job.trial_dir, threads)  # the design is traced again from the model: Keras is needed
    outcome = run_job(cfg, job, lambda stage: None, model_bytes)
    outcome.info["synth_host"] = socket.gethostname()
    return outcome


@dataclass
class _RayTrial:
    job: Job
    stage: str  # "train" (train + firmware) or "synth"
    ref: object
    submitted: float = field(default_factory=time.monotonic)


class RayExecutor:
    name = "ray"

    def __init__(self, cfg: StudyConfig) -> None:
        import ray

        self.cfg = cfg
        r = cfg.execution.ray
        self.owns_ray = not ray.is_initialized()
        if self.owns_ray:
            if r.address:
                ray.init(address=r.address, log_to_driver=False)
            else:
                ray.init(num_cpus=r.num_cpus, include_dashboard=False, log_to_driver=False)
        t = cfg.execution.timeouts
        self.limits = {
            "train": None if t.train is None or t.firmware is None else t.train + t.firmware,
            "synth": t.synth,
        }
        self.train_fn = self._remote(_train_task, r.train, r.max_retries)
        self.synth_fn = self._remote(_synth_task, r.synth, r.max_retries)
        self.later_fn = self._remote(_later_task, r.synth, r.max_retries)
        self.with_bytes = r.transfer == "object_store"
        self.running: dict[int, _RayTrial] = {}

    def preflight(self) -> Ready:
        from ..preflight import preflight

        return preflight(self.cfg)

    @staticmethod
    def _remote(fn, stage: RayStage, retries: int):
        import ray

        return ray.remote(
            num_cpus=stage.num_cpus,
            num_gpus=stage.num_gpus,
            resources=stage.resources or None,
            max_retries=retries,
            max_calls=1,
        )(fn)

    @staticmethod
    def _threads(stage: RayStage) -> int:
        return max(1, int(stage.num_cpus))

    def submit(self, job: Job) -> None:
        if isinstance(job, SynthJob):  # synthesis alone, on the synthesis resources
            data = job.model_path.read_bytes() if self.with_bytes else None
            ref = self.later_fn.remote(self.cfg, job, self._threads(self.cfg.execution.ray.synth), data)
            self.running[job.number] = _RayTrial(job, "synth", ref)
            return
        train = self.cfg.execution.ray.train
        ref = self.train_fn.remote(self.cfg, job, self._threads(train), self.with_bytes)
        self.running[job.number] = _RayTrial(job, "train", ref)

    def poll(self, timeout: float) -> list[Finished]:
        import ray

        if not self.running:
            return []
        by_ref = {r.ref: r for r in self.running.values()}
        ready, _ = ray.wait(list(by_ref), num_returns=len(by_ref), timeout=timeout)
        finished = []
        for ref in ready:
            r = by_ref[ref]
            try:
                result = ray.get(ref)
            except ray.exceptions.RayTaskError as err:
                cause = err.cause if err.cause is not None else err
                finished.append(self._fail(r, error_text(cause), str(err)[-4000:]))
                continue
            except ray.exceptions.RayError as err:  # worker or node died, retries used up; cancelled
                finished.append(self._fail(r, f"{r.stage} task lost: {error_text(err)}"))
                continue
            if r.stage == "train":
                synth = self.cfg.execution.ray.synth
                r.ref = self.synth_fn.remote(self.cfg, r.job, result, self._threads(synth))
                r.stage, r.submitted = "synth", time.monotonic()
            else:
                del self.running[r.job.number]
                finished.append(Finished(r.job, result))
        now = time.monotonic()
        for r in list(self.running.values()):
            limit = self.limits[r.stage]
            grace = SYNTH_GRACE if r.stage == "synth" else 0.0
            if limit is not None and now - r.submitted > limit + grace:
                ray.cancel(r.ref, force=True)
                finished.append(self._fail(r, f"stage {r.stage!r} ran over its timeout of {limit:g} s; cancelled"))
        return finished

    def _fail(self, r: _RayTrial, error: str, tb: str | None = None) -> Finished:
        self.running.pop(r.job.number, None)
        info = {"traceback": tb} if tb else {}
        return Finished(r.job, TrialOutcome(error=error, info=info))

    def cancel_all(self) -> list[Finished]:
        import ray

        out = []
        for r in list(self.running.values()):
            ray.cancel(r.ref, force=True)
            out.append(self._fail(r, f"cancelled by the user during stage {r.stage!r}"))
        return out

    def close(self) -> None:
        import ray

        self.cancel_all()
        if self.owns_ray:
            ray.shutdown()
