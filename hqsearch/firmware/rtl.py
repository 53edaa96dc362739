"""alkaid's pipelined Verilog project for a traced design, as the RTL backends build it and the estimate
describes it."""

from __future__ import annotations

from pathlib import Path

from hqsearch.config.schema import SynthesisSection


def rtl_model(comb, cfg: SynthesisSection, out_dir: Path, name: str = "model", *, fuses_adders: bool):
    """alkaid's Verilog project for the design (`RTLModel`), pipelined at the configured latency cutoff.
    Everything that decides the design is passed, not left to alkaid's defaults (a 5 ns clock among them);
    `fuses_adders` is the backend's (`Backend.fuses_adders`)."""
    from alkaid.codegen import RTLModel

    return RTLModel(
        comb,
        out_dir,
        prj_name=name,
        ternary_fuse=fuses_adders,
        flavor="verilog",
        latency_cutoff=cfg.latency_cutoff,
        clock_period=cfg.clock_period,
        part_name=cfg.part,
        print_latency=False,
    )


def write_rtl(comb, cfg: SynthesisSection, out_dir: Path, name: str = "model", *, fuses_adders: bool) -> Path:
    """Write the Verilog sources, constraints, build scripts and metadata.json."""
    rtl_model(comb, cfg, out_dir, name, fuses_adders=fuses_adders).write()
    return out_dir
