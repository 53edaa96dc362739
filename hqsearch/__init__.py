"""hqsearch: multi-objective search over HGQ2 networks for the best accuracy per FPGA LUT and cycle.

The public API is what the `hqsearch` command uses: `load_config` reads a YAML study config, `run_study`
runs it. Both are imported on first use, so `import hqsearch` stays light (no TensorFlow, JAX or Ray).
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

try:
    __version__ = version("hqsearch")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

if TYPE_CHECKING:
    from hqsearch.config.schema import load_config
    from hqsearch.driver import run_study

_API = {"load_config": "hqsearch.config.schema", "run_study": "hqsearch.driver"}


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'hqsearch' has no attribute {name!r}")


__all__ = ["__version__", "load_config", "run_study"]
