"""hqsearch: multi-objective search over HGQ2 networks for the best accuracy per FPGA LUT and cycle.

The public API is what the `hqsearch` command uses: `load_config` reads a YAML study config, `run_study`
runs it. Everything heavy (TensorFlow, JAX, Ray) is imported only when a study runs.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("hqsearch")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

if TYPE_CHECKING:
    from hqsearch.config.schema import StudyConfig
    from hqsearch.driver import RunSummary


def load_config(path) -> StudyConfig:
    """The study config in the YAML file at `path`, validated (a `ConfigError` names the field and line)."""
    from hqsearch.config.schema import load_config as load

    return load(path)


def run_study(cfg: StudyConfig, **kwargs: Any) -> RunSummary:
    """Run the study `cfg` to its target (see `hqsearch.driver.run_study` for the keyword arguments)."""
    from hqsearch.driver import run_study as run

    return run(cfg, **kwargs)


__all__ = ["__version__", "load_config", "run_study"]
