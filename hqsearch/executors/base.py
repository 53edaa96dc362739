"""The contract between the driver and an executor."""

from __future__ import annotations

import os
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from hqsearch.config.schema import StudyConfig
from hqsearch.pipeline.preflight import Ready
from hqsearch.pipeline.trial import TrialOutcome
from hqsearch.search.fidelity import Gate
from hqsearch.search.space import TrialParams
from hqsearch.search.stopping import Outlook

# Seconds an executor waits past the synth stage's limit before it kills the worker itself: inside, the
# trial kills its tool at the limit and fails with the tool's name, which says more than a killed worker.
SYNTH_GRACE = 5.0


@dataclass(frozen=True)
class TrialJob:
    number: int  # the Optuna trial number
    params: TrialParams
    trial_dir: Path
    seed: int | None
    start_from: Path | None = None  # a continuation's checkpoint, copied into its trial folder by the driver
    gate: Gate | None = None  # which designs the synthesis backend measures (see `fidelity`); None: all
    outlook: Outlook | None = None  # when the training stops behind the study's front (see `stopping`)


@dataclass(frozen=True)
class SynthJob:
    """Synthesis alone, for a point told with its estimate that could now reach the measured front."""

    number: int  # the point's trial number
    model_path: Path  # its model, downloaded by the driver
    ebops: float
    trial_dir: Path  # where the build goes
    settings: dict = field(default_factory=dict)  # the hls4ml settings its trial chose, if the search chose them


Job = TrialJob | SynthJob


@dataclass(frozen=True)
class Finished:
    job: Job
    outcome: TrialOutcome  # outcome.error is set when the trial failed, was killed or timed out


def prepare_worker(cfg: StudyConfig, trial_dir: Path, threads: int, keras: bool = True) -> None:
    """In a fresh worker process: output to the trial's log, the study's Keras backend with its thread pools
    sized (unless the work needs no Keras at all, which then is not even imported)."""
    trial_dir.mkdir(parents=True, exist_ok=True)
    log = os.open(trial_dir / "trial.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if keras:
        from hqsearch.keras_backend import prepare

        prepare(cfg.execution.keras_backend, threads, cfg.execution.compile_cache)


def work_job(cfg: StudyConfig, job: Job, threads: int, model_bytes: bytes | None, on_stage: Callable[[str], None]):
    """A job in its forked worker process (see `forked`): the process prepared, then the job run."""
    prepare_worker(cfg, job.trial_dir, threads)
    return run_job(cfg, job, on_stage, model_bytes)


def check(cfg: StudyConfig, tools: Collection[str], where: str, on_stage: Callable[[str], None]):  # noqa: ARG001
    """The preflight in a forked worker process, finding the tools of the stages in `tools` there (`where` says
    where that is): `Ready`, or the exception it raised, for the driver to raise."""
    from hqsearch.pipeline.preflight import preflight

    try:
        return preflight(cfg, tools=tools, where=where)
    except Exception as err:  # a ConfigError for the user, or a bug: the driver raises it either way
        return err


def run_job(cfg: StudyConfig, job: Job, on_stage: Callable[[str], None], model_bytes: bytes | None = None):
    """What a worker runs for a job: a whole trial, or a later synthesis."""
    from hqsearch.pipeline.trial import run_trial, synth_later

    if isinstance(job, SynthJob):
        return synth_later(cfg, job.model_path, job.ebops, job.trial_dir, on_stage, model_bytes, job.settings)
    return run_trial(
        cfg,
        job.params,
        job.trial_dir,
        job.gate,
        seed=job.seed,
        on_stage=on_stage,
        start_from=job.start_from,
        outlook=job.outlook,
    )


def error_text(err: BaseException) -> str:
    """`Type: message`. Ray re-raises a task's exception as `RayTaskError(Type)` whose text carries the
    remote traceback: the message is taken from its arguments instead."""
    name = type(err).__name__
    if name.startswith("RayTaskError(") and err.args:
        return f"{name.removeprefix('RayTaskError(').removesuffix(')')}: {err.args[0]}"
    return f"{name}: {err}"


class Executor(Protocol):
    name: str

    def preflight(self) -> Ready:
        """Load the data and build the model once, where trials run; a `ConfigError` names what is wrong."""
        ...

    def submit(self, job: Job) -> None:
        """Start a trial (training, then synthesis) or a synthesis alone (`SynthJob`, on synthesis resources)."""
        ...

    def poll(self, timeout: float) -> list[Finished]:
        """Wait up to `timeout` seconds; return the jobs that finished meanwhile."""
        ...

    def cancel_all(self) -> list[Finished]:
        """Stop every running job now; each comes back as failed."""
        ...

    def close(self) -> None:
        """Release what the executor started (a local Ray instance)."""
        ...
