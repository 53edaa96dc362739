"""The RTL backends' shared part: da4ml writes the pipelined Verilog project they build."""

from __future__ import annotations

from pathlib import Path

from ..config import SynthesisSection
from .base import Backend, Design, Project


def rtl_model(comb, cfg: SynthesisSection, out_dir: Path, name: str = "model"):
    """da4ml's Verilog project for the design (`RTLModel`), pipelined at the configured latency cutoff."""
    from da4ml.codegen import RTLModel

    return RTLModel(
        comb,
        name,
        out_dir,
        flavor="verilog",
        latency_cutoff=cfg.latency_cutoff,
        clock_period=cfg.clock_period,
        part_name=cfg.part,
        print_latency=False,
    )


def write_rtl(comb, cfg: SynthesisSection, out_dir: Path, name: str = "model") -> Path:
    """Write the Verilog sources, constraints, build scripts and metadata.json."""
    rtl_model(comb, cfg, out_dir, name).write()
    return out_dir


class RTLBackend(Backend):
    """A backend that builds da4ml's Verilog (in `<workdir>/rtl`) with its own tool."""

    def write(self, design: Design, cfg: SynthesisSection, workdir: Path) -> Project:
        return Project(write_rtl(design.comb, cfg, Path(workdir) / "rtl"))
