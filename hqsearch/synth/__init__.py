"""Synthesis backends behind one interface: `get_backend(name).synthesize(design, cfg, workdir)`."""

from .base import Backend, Design, SynthResult
from .estimate import EstimateBackend

BACKENDS: dict[str, type[Backend]] = {"estimate": EstimateBackend}


def get_backend(name: str) -> Backend:
    return BACKENDS[name]()


__all__ = ["BACKENDS", "Backend", "Design", "SynthResult", "get_backend"]
