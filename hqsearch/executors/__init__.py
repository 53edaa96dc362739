"""Executors run trials away from the driver: `local` worker processes, or tasks on a Ray cluster."""

from __future__ import annotations

from hqsearch.config.schema import StudyConfig
from hqsearch.executors.base import Executor, Finished, SynthJob, TrialJob
from hqsearch.executors.local import LocalExecutor


def make_executor(cfg: StudyConfig) -> Executor:
    if cfg.execution.executor == "ray":
        from hqsearch.executors.ray import RayExecutor  # Ray loads only for studies that use it

        return RayExecutor(cfg)
    return LocalExecutor(cfg)


__all__ = ["Executor", "Finished", "LocalExecutor", "SynthJob", "TrialJob", "make_executor"]
