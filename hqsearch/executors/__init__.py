"""Executors run trials somewhere else than the driver: each trial in its own worker process."""

from __future__ import annotations

from ..config import StudyConfig
from .base import Executor, Finished, TrialJob
from .local import LocalExecutor


def make_executor(cfg: StudyConfig) -> Executor:
    return LocalExecutor(cfg)


__all__ = ["Executor", "Finished", "LocalExecutor", "TrialJob", "make_executor"]
