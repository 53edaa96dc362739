"""Trials on a Ray cluster: training and synthesis as separate tasks with their own resources.

The training task (stages `train` and `firmware`) asks for `execution.ray.train`, the synthesis task
for `execution.ray.synth`, so synthesis goes only to nodes started with e.g.
`ray start --resources='{"vivado": 1}'`, and one trial's synthesis runs while the next ones train.
Ray's workers are kept warm: each task runs its stage in a fresh process forked from its worker's own
server, which imported the Keras backend and friends once (see `forked`). So the backend's thread pools
are sized from the task's CPUs before its first op, and the stage's memory goes back when it ends,
without paying the imports per task. Every task carries `KERAS_BACKEND` in its runtime environment:
Ray starts the workers of each environment apart, so a worker's server never serves two backends.
A stage whose process or worker or node dies is retried `max_retries` times by Ray; an exception in the
trial is not retried. With `transfer: object_store` no node needs a filesystem shared with the driver: a
task's files travel with its result (see `parcel`).

On Ray a stage's timeout counts from the task's submission, time spent waiting for resources included.
A synth task measures the final design and then each harvested candidate, and each design has
`timeouts.synth` of its own, as locally: inside the task its tool is killed at that limit and that design
alone fails. The cancel here is a backstop for a task that hangs outside its tools, sized to the task's
designs, so a slow candidate never costs the training or the designs measured before it.

The preflight waits `resource_wait` seconds at most for a node that has each stage's resources, and finds
the synthesis tools on every node that has the synthesis resources.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from hqsearch.config.schema import RayStage, StudyConfig
from hqsearch.executors.base import (
    SYNTH_GRACE,
    Finished,
    Job,
    SynthJob,
    TrialJob,
    check,
    error_text,
    prepare_worker,
    work_job,
)
from hqsearch.executors.forked import Forked, WorkerLost, WorkFailed, context
from hqsearch.executors.parcel import Parcel, pack, trial_files, unpack
from hqsearch.keras_backend import DEFAULT
from hqsearch.pipeline.preflight import Ready, check_synth_tools, ray_address_problem
from hqsearch.pipeline.trial import Trained, TrialOutcome

_ctx = None  # this Ray worker's fork server


def warm_up() -> None:
    """Start this Ray worker's fork server now (Ray's `worker_process_setup_hook`), so its imports run while
    the worker waits for its first task instead of delaying it."""
    global _ctx
    if _ctx is None:
        # A child starts by running its parent's main module again, which is Ray's default_worker.py:
        # with Ray imported in the server that is about 0.02 s instead of 0.2 s per stage.
        _ctx = context(os.environ.get("KERAS_BACKEND", DEFAULT), also=("ray",))


def _forked(name: str, work, *args):
    """Run `work` in a fresh process forked from this worker's warm server; its value, or it raises."""
    warm_up()
    return Forked(_ctx, name, work, args).result()


def _here() -> str:
    import ray

    return f"on Ray node {ray.util.get_node_ip_address()}"


def _preflight_task(cfg: StudyConfig) -> Ready | Exception:
    return _forked("preflight", check, cfg, ("firmware",), _here())  # where trainings and firmware run


def _tools_task(cfg: StudyConfig) -> Exception | None:
    """The synthesis tools, found on this node: on PATH as its Ray workers see it, as the synth tasks will."""
    try:
        check_synth_tools(cfg, where=_here())
    except Exception as err:  # a ConfigError for the user, or a bug: the driver raises it either way
        return err
    return None


_FIELDS = {"CPU": "num_cpus", "GPU": "num_gpus"}  # any other resource is asked for in `resources`


def _request(stage: RayStage) -> dict[str, float]:
    """The resources a stage's task asks Ray for, as Ray names them."""
    return {k: v for k, v in {"CPU": stage.num_cpus, "GPU": stage.num_gpus, **stage.resources}.items() if v > 0}


def _shown(resources: dict[str, float]) -> str:
    """`CPU 2, memory 3.5 GiB, vivado 1`: without the `node:<ip>` resource every node has of its own."""
    return ", ".join(
        f"{k} {v / 2**30:.1f} GiB" if k.endswith("memory") else f"{k} {v:g}"
        for k, v in sorted(resources.items())
        if not k.startswith("node:")
    )


def _idle(on_stage) -> None:  # noqa: ARG001
    """Nothing: forking it waits until the worker's server has imported everything."""


def _warm_task() -> None:
    _forked("warm-up", _idle)


def _where(outcome: TrialOutcome, stage: str) -> None:
    import ray

    outcome.info[f"{stage}_host"] = socket.gethostname()
    outcome.info[f"{stage}_node"] = ray.get_runtime_context().get_node_id()
    outcome.info[f"{stage}_worker"] = os.getpid()  # the Ray worker; `{stage}_pid` is the stage's own process
    if (gpus := os.environ.get("CUDA_VISIBLE_DEVICES")) is not None:  # set by Ray for a task given GPUs
        outcome.info[f"{stage}_cuda_visible_devices"] = gpus


def _train(cfg: StudyConfig, job: TrialJob, threads: int, start: bytes | None, on_stage) -> Trained:  # noqa: ARG001
    prepare_worker(cfg, job.trial_dir, threads)
    (job.trial_dir / "train.pid").write_text(str(os.getpid()))
    if start is not None:  # a continuation's checkpoint, from the driver's node
        job.start_from.write_bytes(start)
    from hqsearch.pipeline.trial import train_stage

    return train_stage(
        cfg, job.params, job.trial_dir, job.seed, start_from=job.start_from, outlook=job.outlook
    ).portable()


def _train_task(
    cfg: StudyConfig, job: TrialJob, threads: int, with_bytes: bool, start: bytes | None
) -> tuple[Trained, Parcel]:
    """The training and its files (see `parcel`: empty unless the files travel through Ray)."""
    with _log_on_failure(job.trial_dir, with_bytes):
        trained = _forked(f"train-{job.number}", _train, cfg, job, threads, start)
    _where(trained.outcome, "train")
    return trained, _parcel([trained.outcome, *(c.outcome for c in trained.candidates)], job.trial_dir, with_bytes)


def _synth(cfg: StudyConfig, job: TrialJob, trained: Trained, threads: int, on_stage) -> TrialOutcome:  # noqa: ARG001
    from hqsearch.backends import uses_hls4ml
    from hqsearch.pipeline.trial import synth_stage

    prepare_worker(cfg, job.trial_dir, threads, keras=uses_hls4ml(cfg.synthesis))
    return synth_stage(cfg, job.params, trained, job.trial_dir, gate=job.gate)


def _synth_task(
    cfg: StudyConfig, job: TrialJob, trained: Trained, threads: int, with_bytes: bool, trained_files: Parcel
) -> tuple[TrialOutcome, Parcel]:
    """The synthesis, on a node that may not be the training's: the training's files are written there
    first (where they are missing), and the whole trial's go back."""
    unpack(trained_files, job.trial_dir, keep_existing=True)
    with _log_on_failure(job.trial_dir, with_bytes):
        outcome = _forked(f"synth-{job.number}", _synth, cfg, job, trained, threads)
    _where(outcome, "synth")
    return outcome, _parcel([outcome], job.trial_dir, with_bytes)


def _later_task(
    cfg: StudyConfig, job: SynthJob, threads: int, model_bytes: bytes | None
) -> tuple[TrialOutcome, Parcel]:
    # the design is traced again from the model: the process prepares Keras
    with _log_on_failure(job.trial_dir, model_bytes is not None):
        outcome = _forked(f"later-{job.number}", work_job, cfg, job, threads, model_bytes)
    _where(outcome, "synth")
    return outcome, _parcel([outcome], job.trial_dir, model_bytes is not None)


def _parcel(outcomes: list[TrialOutcome], trial_dir: Path, with_bytes: bool) -> Parcel:
    return pack(trial_files(outcomes, trial_dir), trial_dir) if with_bytes else {}


@contextmanager
def _log_on_failure(trial_dir: Path, with_bytes: bool) -> Iterator[None]:
    """A stage that raised takes its trial's log back with its error, for the driver to upload."""
    try:
        yield
    except WorkFailed as err:
        log = pack([trial_dir / "trial.log"], trial_dir) if with_bytes else {}
        raise WorkFailed(*err.args[:2], log) from None


@dataclass
class _RayTrial:
    job: Job
    stage: str  # "train" (train + firmware) or "synth"
    ref: object
    submitted: float = field(default_factory=time.monotonic)
    designs: int = 1  # what its synth task measures one after the other: the final model and its candidates


class RayExecutor:
    name = "ray"

    def __init__(self, cfg: StudyConfig) -> None:
        import ray

        self.cfg = cfg
        r = cfg.execution.ray
        self.owns_ray = not ray.is_initialized()
        if self.owns_ray:
            env = {"worker_process_setup_hook": f"{__name__}.warm_up"}
            if r.address:
                # ray.init retries an address where no head answers for minutes: probe it, briefly, first
                if problem := ray_address_problem(r.address):
                    raise cfg.error("execution.ray.address", problem)
                try:
                    ray.init(address=r.address, log_to_driver=False, runtime_env=env)
                except ConnectionError as err:  # e.g. 'auto' where no cluster runs
                    why = f"cannot join a Ray cluster at {r.address!r}: {str(err).strip().splitlines()[0]}"
                    raise cfg.error("execution.ray.address", why) from None
            else:
                # "local": a new instance even where a Ray cluster already runs on this machine
                ray.init(
                    address="local",
                    num_cpus=r.num_cpus,
                    include_dashboard=False,
                    log_to_driver=False,
                    runtime_env=env,
                )
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
        """Check data and model where trainings run, in a forked process as a trial would be, and the synthesis
        tools on every node that has the synthesis resources. Meanwhile as many more training workers as
        trials will run at once start their servers, so the first trials find them warm; the driver itself
        never imports Keras. A stage whose resources no node has is an error, not a wait forever."""
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        r = self.cfg.execution.ray
        wait = 0.0 if self.owns_ray and not r.address else r.resource_wait  # no node joins a private instance
        synth_nodes = self._nodes({"train": r.train, "synth": r.synth}, wait)["synth"]
        check = self._remote(_preflight_task, r.train, 0).remote(self.cfg)
        tools = self._remote(_tools_task, r.synth, 0)
        on_nodes = [
            tools.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote(self.cfg)
            for node in synth_nodes
        ]
        warm = self._remote(_warm_task, r.train, 0)
        self.warming = [warm.remote() for _ in range(self.cfg.execution.max_concurrent - 1)]  # not waited for
        ready, *found = ray.get([check, *on_nodes])
        for result in (ready, *found):
            if isinstance(result, Exception):
                raise result
        return ready

    def _nodes(self, stages: dict[str, RayStage], wait: float) -> dict[str, list[str]]:
        """The ids of the alive nodes that can run each stage's task. Waits up to `wait` seconds for nodes that
        are still joining; after that a stage that fits no node is a `ConfigError` naming what it asks for."""
        import ray

        deadline = time.monotonic() + wait
        while True:
            nodes = [n for n in ray.nodes() if n["Alive"]]
            fit = {
                name: [n["NodeID"] for n in nodes if all(n["Resources"].get(k, 0) >= v for k, v in _request(s).items())]
                for name, s in stages.items()
            }
            unmet = [name for name, ids in fit.items() if not ids]
            if not unmet:
                return fit
            if time.monotonic() >= deadline:
                break
            time.sleep(1.0)
        name = unmet[0]
        need = _request(stages[name])
        known = {k for n in nodes for k in n["Resources"]}
        absent = [k for k in need if k not in known]
        short = absent or [k for k in need if not any(n["Resources"].get(k, 0) >= need[k] for n in nodes)] or list(need)
        key = f"execution.ray.{name}.{_FIELDS.get(short[0], 'resources')}"
        waited = f" (waited {wait:g} s, execution.ray.resource_wait)" if wait else ""
        if absent:
            what = f"no node of the Ray cluster has {', '.join(map(repr, absent))}{waited}"
        else:
            what = f"no node of the Ray cluster has {_shown(need)} at once{waited}"
        cluster = "; ".join(f"{n['NodeManagerAddress']}: {_shown(n['Resources'])}" for n in nodes)
        raise self.cfg.error(key, f"{what}; its nodes have: {cluster}")

    def _remote(self, fn, stage: RayStage, retries: int):
        import ray

        return ray.remote(
            # a task given no GPU sees none (Ray leaves CUDA_VISIBLE_DEVICES unset for it otherwise)
            runtime_env={
                "env_vars": {
                    "KERAS_BACKEND": self.cfg.execution.keras_backend,
                    "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "1",
                }
            },
            num_cpus=stage.num_cpus,
            num_gpus=stage.num_gpus,
            # a worker stays warm for GPU tasks too (Ray's default ends it after one, to free the GPU memory
            # the task took): the stage took it in its own forked process, gone when the stage ends
            max_calls=0,
            resources=stage.resources or None,
            max_retries=retries,
            retry_exceptions=[WorkerLost],  # its process died: like a worker or node that died
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
        start = job.start_from.read_bytes() if self.with_bytes and job.start_from is not None else None
        ref = self.train_fn.remote(self.cfg, job, self._threads(train), self.with_bytes, start)
        self.running[job.number] = _RayTrial(job, "train", ref)

    def poll(self, timeout: float) -> list[Finished]:
        import ray

        if not self.running:
            return []
        by_ref = {r.ref: r for r in self.running.values()}
        ready, rest = ray.wait(list(by_ref), num_returns=1, timeout=timeout)  # back as soon as one is done
        if ready and rest:
            ready += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
        finished = []
        for ref in ready:
            r = by_ref[ref]
            try:
                result = ray.get(ref)
            except ray.exceptions.RayTaskError as err:
                cause = err.cause if err.cause is not None else err
                if isinstance(cause, WorkFailed):  # the trial raised, in the task's forked process
                    finished.append(self._fail(r, *cause.args))
                elif isinstance(cause, WorkerLost):
                    finished.append(self._fail(r, f"{r.stage} task lost: {cause}"))
                else:
                    finished.append(self._fail(r, error_text(cause), str(err)[-4000:]))
                continue
            except ray.exceptions.RayError as err:  # worker or node died, retries used up; cancelled
                finished.append(self._fail(r, f"{r.stage} task lost: {error_text(err)}"))
                continue
            result, files = result
            if r.stage == "train":
                synth = self._threads(self.cfg.execution.ray.synth)
                r.ref = self.synth_fn.remote(self.cfg, r.job, result, synth, self.with_bytes, files)
                r.stage, r.submitted = "synth", time.monotonic()
                r.designs = 1 + len(result.candidates)
            else:
                del self.running[r.job.number]
                unpack(files, r.job.trial_dir)  # the driver uploads them from here
                finished.append(Finished(r.job, result))
        now = time.monotonic()
        for r in list(self.running.values()):
            limit = self.limits[r.stage]
            if limit is not None and now - r.submitted > self._backstop(r, limit):
                ray.cancel(r.ref, force=True)
                each = f" for each of its {r.designs} designs" if r.designs > 1 else ""
                error = f"stage {r.stage!r} ran over its timeout of {limit:g} s{each}; cancelled"
                finished.append(self._fail(r, error))
        return finished

    @staticmethod
    def _backstop(r: _RayTrial, limit: float) -> float:
        """Seconds after its submission that a task is cancelled. A synth task's designs each get the limit
        inside the task, where a design's tool is killed at it and that design alone fails; this allows
        them all, one after the other, each with the grace of a tool being killed."""
        if r.stage != "synth":
            return limit
        return r.designs * (limit + SYNTH_GRACE)

    def _fail(self, r: _RayTrial, error: str, tb: str | None = None, log: Parcel | None = None) -> Finished:
        self.running.pop(r.job.number, None)
        unpack(log or {}, r.job.trial_dir)
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
