"""The RTL backends' shared part: alkaid writes the pipelined Verilog project they build."""

from __future__ import annotations

from pathlib import Path

from hqsearch.backends.base import Backend, Design, Project
from hqsearch.config.schema import SynthesisSection


def rtl_model(comb, cfg: SynthesisSection, out_dir: Path, name: str = "model"):
    """alkaid's Verilog project for the design (`RTLModel`), pipelined at the configured latency cutoff.
    Everything that decides the design is passed, not left to alkaid's defaults (a 5 ns clock among them)."""
    from alkaid.codegen import RTLModel

    from hqsearch.backends import get_backend

    return RTLModel(
        comb,
        out_dir,
        prj_name=name,
        ternary_fuse=get_backend(cfg.backend).fuses_adders,
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
    """A backend that builds alkaid's Verilog (in `<workdir>/rtl`) with its own tool."""

    def write(self, design: Design, cfg: SynthesisSection, workdir: Path) -> Project:
        return Project(write_rtl(design.comb, cfg, Path(workdir) / "rtl"))
