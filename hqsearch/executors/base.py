"""The contract between the driver and an executor."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..space import TrialParams
from ..trial import TrialOutcome


@dataclass(frozen=True)
class TrialJob:
    number: int  # the Optuna trial number
    params: TrialParams
    trial_dir: Path
    seed: int | None


@dataclass(frozen=True)
class Finished:
    job: TrialJob
    outcome: TrialOutcome  # outcome.error is set when the trial failed, was killed or timed out


class Executor(Protocol):
    name: str

    def submit(self, job: TrialJob) -> None: ...

    def poll(self, timeout: float) -> list[Finished]:
        """Wait up to `timeout` seconds; return the jobs that finished meanwhile."""
        ...

    def cancel_all(self) -> list[Finished]:
        """Stop every running job now; each comes back as failed."""
        ...

    @property
    def n_running(self) -> int: ...
