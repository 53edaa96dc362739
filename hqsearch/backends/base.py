"""What every synthesis backend takes and gives back, and the one path they all share.

As hls4ml's `backends/` do, each backend owns its whole path: it writes its project (alkaid's RTL or an
hls4ml project), builds it with its tool and reads the reports. The cache lookup, the tool run and the
cache store around those three steps are written once here, in `Backend.synthesize`. A `SynthResult`
carries, next to each number, the tool that produced it, so an estimate is never mistaken for a
measurement.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from hqsearch.backends.cache import DesignCache
from hqsearch.backends.tools import SynthError
from hqsearch.config.schema import SynthesisSection


@dataclass(frozen=True)
class Design:
    """A trained, calibrated model, its traced logic and, for the HLS backends, its hls4ml project."""

    model: Any  # keras.Model
    comb: Any  # alkaid.types.CombLogic
    ebops: float
    project: Any = None  # what the backend's `prepare` made: an hls4ml ModelGraph for the HLS backends
    ebops_source: str = "hgq trace_minmax (calibrated)"


@dataclass(frozen=True)
class SynthResult:
    metrics: dict[str, float]  # luts, ffs, dsps, latency_cycles, latency_ns, estimated_luts, ...
    sources: dict[str, str]  # metric -> the tool that produced it ("alkaid estimate", "yosys 0.47", ...)
    tool: str
    files: list[Path] = field(default_factory=list)  # reports and logs worth keeping as artifacts
    cache_key: str | None = None
    cache_hit: bool = False
    details: dict[str, Any] = field(default_factory=dict)  # tool-specific extras (cell counts, II, ...)
    estimate: dict[str, float] = field(default_factory=dict)  # the cheap fidelity's numbers for the same design
    skipped: str | None = None  # why the backend did not measure it; its numbers are then the estimate's


@dataclass(frozen=True)
class Project:
    """A written project: its folder, the name its tool knows it by, and what writing it did."""

    path: Path
    name: str = "model"
    details: dict[str, Any] = field(default_factory=dict)


class Backend:
    """One synthesis backend: `prepare` (at the firmware stage), then `write`, `cache_key`, `build`, `read`."""

    name: ClassVar[str] = ""
    # "alkaid": accuracy comes from alkaid's emulation of the traced logic; "hls4ml": the firmware stage
    # builds the hls4ml project (`prepare`) and accuracy comes from its C++ emulation
    emulation: ClassVar[str] = "alkaid"
    # whether alkaid fuses pairs of adders into ternary adders in the RTL this backend builds (and the
    # estimate describes): Vivado maps a ternary adder to one LUT per bit
    fuses_adders: ClassVar[bool] = True
    # the Xilinx tool the backend runs, and the backends to choose where it is missing
    executable: ClassVar[str] = ""
    instead: ClassVar[str] = "'estimate' or 'yosys'"

    def _exe(self) -> str:
        """The tool's path: where it is missing, the one error worth reading, before anything is written."""
        exe = shutil.which(self.executable)
        if exe is None:
            raise SynthError(
                f"backend {self.name!r} needs {self.executable!r} on PATH (source the Xilinx settings64.sh), "
                f"or choose backend {self.instead}"
            )
        return exe

    def prepare(self, model: Any, cfg: SynthesisSection, folder: Path) -> Any:
        """What the firmware stage must build besides the traced logic; None for the RTL backends."""
        return None

    def write(self, design: Design, cfg: SynthesisSection, workdir: Path) -> Project:
        """The project the tool builds."""
        raise NotImplementedError

    def cache_key(self, project: Project, cfg: SynthesisSection) -> str:
        """A hash of everything that decides the result (see `cache.design_key`)."""
        raise NotImplementedError

    def build(self, project: Project, cfg: SynthesisSection, timeout: float | None) -> tuple[int, Path]:
        """Run the tool on the project; returns its exit code and its log."""
        raise NotImplementedError

    def read(self, project: Project, cfg: SynthesisSection, log: Path, code: int) -> SynthResult:
        """The numbers from the reports; `SynthError` when the build failed."""
        raise NotImplementedError

    def synthesize(
        self, design: Design, cfg: SynthesisSection, workdir: Path, timeout: float | None = None
    ) -> SynthResult:
        project = self.write(design, cfg, workdir)
        key = self.cache_key(project, cfg)
        cache = DesignCache(cfg.design_cache_dir) if cfg.cache else None
        if cache is not None and (hit := cache.get(key)) is not None:
            return SynthResult(**hit, cache_key=key, cache_hit=True)
        code, log = self.build(project, cfg, timeout)
        result = self.read(project, cfg, log, code)
        result = replace(result, cache_key=key, details={**project.details, **result.details, "exit_code": code})
        if cache is not None:
            cache.put(key, result)
        return result
