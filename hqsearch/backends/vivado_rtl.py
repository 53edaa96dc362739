"""Vivado on alkaid's RTL: synthesis, placement and routing of the Verilog, no HLS in between.

alkaid writes the pipelined Verilog and `build_vivado_prj.tcl`, which runs synth → place → route
out of context and writes its reports under `output_<name>/reports/`. Numbers come from the
post-route reports, or the post-synthesis ones when routing left none; the latency in cycles is the
RTL's own (alkaid's metadata.json), the achieved clock is the target period minus the worst slack.
As for the HLS backends, success is read from the reports and the log, never from the exit code.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from hqsearch.backends.base import Design, Project, SynthResult
from hqsearch.backends.cache import design_files, design_key
from hqsearch.backends.hls import fatal_lines
from hqsearch.backends.rtl import RTLBackend
from hqsearch.backends.tools import SynthError, run_tool, tail, xilinx_version
from hqsearch.backends.vivado_reports import ReportError, parse_timing_summary, parse_utilization
from hqsearch.config.schema import SynthesisSection

BUILD_LOG = "hqsearch_vivado.log"
TCL = "build_vivado_prj.tcl"  # alkaid's Vivado build script
STAGES = ("post_route", "post_synth")  # preferred first


def rtl_project_name(tcl: Path) -> str:
    m = re.search(r'^set project_name "([^"]+)"', tcl.read_text(), re.MULTILINE)
    if not m:
        raise SynthError(f"{tcl}: no 'set project_name' line; not alkaid's Vivado build script")
    return m[1]


def report_paths(rtl_dir: Path, name: str, stage: str) -> tuple[Path, Path]:
    """(utilization, timing summary) of one stage, where alkaid's build_vivado_prj.tcl writes them."""
    reports = rtl_dir / f"output_{name}" / "reports"
    return reports / f"{name}_{stage}_util.rpt", reports / f"{name}_{stage}_timing.rpt"


class VivadoRTLBackend(RTLBackend):
    name = "vivado-rtl"
    executable = "vivado"

    def write(self, design: Design, cfg: SynthesisSection, workdir: Path) -> Project:
        self._exe()  # before anything is written: a missing tool is the one error worth reading
        rtl = super().write(design, cfg, workdir).path
        return Project(rtl, rtl_project_name(rtl / TCL), {"project": str(rtl)})

    def cache_key(self, project: Project, cfg: SynthesisSection) -> str:
        tool = f"vivado {xilinx_version(self._exe())}"
        sources = [*design_files(project.path / "src"), project.path / TCL]
        return design_key(project.path, sources, backend=self.name, part=cfg.part, clock=cfg.clock_period, tool=tool)

    def build(self, project: Project, cfg: SynthesisSection, timeout: float | None) -> tuple[int, Path]:
        for stage in STAGES:  # reports of an earlier build here must not pass for this one's
            for f in report_paths(project.path, project.name, stage):
                f.unlink(missing_ok=True)
        log = project.path / BUILD_LOG
        log.unlink(missing_ok=True)
        return run_tool([self._exe(), "-mode", "batch", "-source", TCL], project.path, log, timeout), log

    def read(self, project: Project, cfg: SynthesisSection, log: Path, code: int) -> SynthResult:
        try:
            return self._read_reports(project.path, project.name, cfg, log)
        except ReportError as err:
            raise SynthError(
                f"vivado build of {project.path} failed: {err} (exit code {code}); last lines of {log}:\n{tail(log)}"
            ) from None

    def _read_reports(self, rtl: Path, name: str, cfg: SynthesisSection, log: Path) -> SynthResult:
        fatal = fatal_lines(log)
        if fatal:
            raise ReportError(f"the build log says it stopped: {fatal[0]!r}")
        for stage in STAGES:
            util_path, timing_path = report_paths(rtl, name, stage)
            if util_path.is_file():
                break
        else:
            wanted = " or ".join(str(report_paths(rtl, name, stage)[0]) for stage in STAGES)
            raise ReportError(f"no utilization report ({wanted})")
        util = parse_utilization(util_path)
        timing = parse_timing_summary(timing_path) if timing_path.is_file() else None
        version = util.version or "version unknown"
        where = f"vivado {version} {stage.replace('_', '-')}"

        meta = json.loads((rtl / "metadata.json").read_text())
        cycles = float(meta.get("latency", 0))  # no "latency": a combinational design
        metrics: dict[str, float] = {
            "luts": util.luts,
            "ffs": util.ffs,
            "dsps": util.dsps,
            "brams": util.brams_18k,
            "latency_cycles": cycles,
            "latency_ns": cycles * cfg.clock_period,
        }
        sources = dict.fromkeys(("luts", "ffs", "dsps", "brams"), where + " utilization")
        sources["latency_cycles"] = sources["latency_ns"] = "alkaid RTL pipeline (metadata.json)"
        details: dict[str, Any] = {
            "stage": stage,
            "design_state": util.state,
            "urams": util.urams,
            "bram_tiles": util.bram_tiles,
        }
        if timing is not None:
            details.update(wns_ns=timing.wns_ns, whs_ns=timing.whs_ns, timing_met=timing.met)
            if timing.wns_ns is not None and cycles > 0:
                period = timing.clock_period_ns or cfg.clock_period
                metrics["estimated_clock_ns"] = period - timing.wns_ns
                sources["estimated_clock_ns"] = where + " timing (clock period - WNS)"
        files = [f for f in (util_path, timing_path, log, rtl / "vivado.log", rtl / "metadata.json") if f.is_file()]
        return SynthResult(metrics=metrics, sources=sources, tool=f"vivado {version}", files=files, details=details)
