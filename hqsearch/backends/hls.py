"""Vivado HLS and Vitis HLS: build the hls4ml project, read its reports.

The build is hls4ml's own `build(csynth=True, synth=True, vsynth=cfg.vsynth)` (C synthesis, then
optionally Vivado logic synthesis of the generated RTL), run through `run_tool` so it has a timeout,
its own process group and a log file. Success is decided from the reports (and the few log lines that
mean the Tcl script stopped), never from the exit code, as hls4ml does: its Vivado build ignores the
exit code, and a successful Vitis build logs harmless "ERROR:" lines (hls4ml's
`catch {config_array_partition -maximum_size}`). Post-synthesis Vivado numbers, when there, replace the
HLS estimates; every metric says which of the two it is.
"""

from __future__ import annotations

import contextlib
import io
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from hqsearch.backends.base import Backend, Design, Project, SynthResult
from hqsearch.backends.cache import design_key
from hqsearch.backends.tools import SynthError, run_tool, tail, xilinx_version
from hqsearch.backends.vivado_reports import ReportError, parse_utilization
from hqsearch.config.schema import SynthesisSection
from hqsearch.firmware.pragmas import apply_fixups

BUILD_LOG = "hqsearch_build.log"
# Log lines that mean the Tcl script stopped, whatever the exit code and whatever reports exist
_FATAL = re.compile(
    r"^(ERROR: \[HLS 200-70\].*|ERROR: \[Common 17-69\] Command failed.*|.*command 'ap_source' returned error code.*"
    r"|ERROR: Cannot find generated Verilog files.*|.*Synthesis failed.*)$",
    re.MULTILINE,
)
_LOG_VERSION = re.compile(r"High-Level Synthesis from .*? v(\d{4}\.\d+(?:\.\d+)?)")


def build_options(vsynth: bool) -> dict[str, int]:
    """hls4ml's build options in its order (the Tcl matches `synth=` before `vsynth=`)."""
    return {
        "reset": 0,
        "csim": 0,
        "synth": 1,
        "cosim": 0,
        "validation": 0,
        "export": 0,
        "vsynth": int(vsynth),
        "fifo_opt": 0,
    }


def vivado_hls_options(vsynth: bool) -> str:
    """`vivado_hls -f build_prj.tcl "<this>"`: the options are ONE argument, the Tcl script splits it."""
    return " ".join(f"{k}={v}" for k, v in build_options(vsynth).items())


def write_vitis_options(project: Path, vsynth: bool) -> None:
    """Vitis reads its build options from the project's build_opt.tcl."""
    lines = "".join(f"    {k:<10} {v}\n" for k, v in build_options(vsynth).items())
    (project / "build_opt.tcl").write_text(f"array set opt {{\n{lines}}}\n")


def design_files(project: Path) -> list[Path]:
    """What decides the synthesis result: the firmware sources and the build scripts, not the emulation .so."""
    files = [f for f in (project / "firmware").rglob("*") if f.is_file() and f.suffix not in (".so", ".o")]
    for script in ("build_prj.tcl", "project.tcl", "vivado_synth.tcl", "build_opt.tcl"):
        if (project / script).is_file():
            files.append(project / script)
    return files


def fatal_lines(log: Path) -> list[str]:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return []
    return [m.group(0).strip() for m in _FATAL.finditer(text)]


def _number(report: dict, key: str, what: Path) -> float:
    value = report.get(key)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ReportError(f"{what}: {key} is {value!r}, not a number") from None


class HLSBackend(Backend):
    """The part Vivado HLS and Vitis HLS share; subclasses say how the build is started."""

    executable = ""
    hls_tool = ""  # how the tool names itself in sources
    hls4ml_backend = ""  # hls4ml's name for it
    emulation = "hls4ml"
    instead = "'estimate', 'yosys' or 'vivado-rtl'"

    def argv(self, exe: str, project: Path, cfg: SynthesisSection) -> list[str]:
        raise NotImplementedError

    def prepare(self, model: Any, cfg: SynthesisSection, folder: Path) -> Any:
        from hqsearch.firmware.hls_project import hls_project

        return hls_project(model, cfg, Path(folder) / "hls4ml_prj", self.hls4ml_backend)

    def write(self, design: Design, cfg: SynthesisSection, workdir: Path) -> Project:
        """The project `prepare` wrote, with the fix-ups applied again: write() and compile() rewrite the
        sources (the fix-ups are idempotent)."""
        if design.project is None:
            raise SynthError(f"backend {self.name!r} needs the design's hls4ml project (Design.project)")
        self._exe()
        path, name = Path(design.project.config.get_output_dir()), design.project.config.get_project_name()
        fixups = apply_fixups(path, cfg.pragma_fixups, name)
        return Project(path, name, {"pragma_fixups": fixups, "project": str(path)})

    def cache_key(self, project: Project, cfg: SynthesisSection) -> str:
        return design_key(
            project.path,
            design_files(project.path),
            backend=self.name,
            part=cfg.part,
            clock=cfg.clock_period,
            vsynth=cfg.vsynth,
            tool=f"{self.hls_tool} {xilinx_version(self._exe())}",
        )

    def build(self, project: Project, cfg: SynthesisSection, timeout: float | None) -> tuple[int, Path]:
        argv = self.argv(self._exe(), project.path, cfg)
        self._clear_reports(project.path, project.name)
        log = project.path / BUILD_LOG
        log.unlink(missing_ok=True)
        return run_tool(argv, project.path, log, timeout), log

    def read(self, project: Project, cfg: SynthesisSection, log: Path, code: int) -> SynthResult:
        try:
            return self._read_reports(project.path, project.name, cfg, log)
        except ReportError as err:
            raise SynthError(
                f"{self.hls_tool} build of {project.path} failed: {err} (exit code {code}); "
                f"last lines of {log}:\n{tail(log)}"
            ) from None

    @staticmethod
    def _solution(project: Path, name: str) -> Path:
        return project / f"{name}_prj" / "solution1"

    def _clear_reports(self, project: Path, name: str) -> None:
        """Reports from an earlier build in this folder must not pass for this build's."""
        report_dir = self._solution(project, name) / "syn" / "report"
        for f in (report_dir / f"{name}_csynth.xml", report_dir / f"{name}_csynth.rpt", project / "vivado_synth.rpt"):
            f.unlink(missing_ok=True)

    def _read_reports(self, project: Path, name: str, cfg: SynthesisSection, log: Path) -> SynthResult:
        from hls4ml.report import parse_vivado_report

        fatal = fatal_lines(log)
        if fatal:
            raise ReportError(f"the build log says it stopped: {fatal[0]!r}")
        report_dir = self._solution(project, name) / "syn" / "report"
        xml = report_dir / f"{name}_csynth.xml"
        if not xml.is_file():
            raise ReportError(f"no C synthesis report {xml}")
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # it prints a line per report it misses
                report = parse_vivado_report(str(project)) or {}
        except Exception as err:  # a half-written report breaks hls4ml's parser in many ways
            raise ReportError(f"hls4ml cannot parse the reports ({type(err).__name__}: {err})") from None
        csynth = report.get("CSynthesisReport")
        if not csynth:
            raise ReportError(f"hls4ml found no C synthesis report under {project}")

        hls_version = self._hls_version(xml, project, log)
        hls_source = f"{self.hls_tool} {hls_version} csynth estimate"
        cycles = _number(csynth, "WorstLatency", xml)
        metrics = {
            "luts": _number(csynth, "LUT", xml),
            "ffs": _number(csynth, "FF", xml),
            "dsps": _number(csynth, "DSP", xml),
            "brams": _number(csynth, "BRAM_18K", xml),
            "latency_cycles": cycles,
            "latency_ns": cycles * cfg.clock_period,
            "ii": _number(csynth, "IntervalMax", xml),
            "estimated_clock_ns": _number(csynth, "EstimatedClockPeriod", xml),
        }
        sources = dict.fromkeys(metrics, hls_source)
        details: dict[str, Any] = {
            "best_latency_cycles": _number(csynth, "BestLatency", xml),
            "interval_min": _number(csynth, "IntervalMin", xml),
            "target_clock_ns": _number(csynth, "TargetClockPeriod", xml),
            "hls_estimate": {k: metrics[k] for k in ("luts", "ffs", "dsps", "brams")},
        }
        files = [f for f in (xml, report_dir / f"{name}_csynth.rpt") if f.is_file()]
        tool = f"{self.hls_tool} {hls_version}"

        rpt = project / "vivado_synth.rpt"
        if rpt.is_file():
            vivado = self._vivado_numbers(rpt, report.get("VivadoSynthReport") or {})
            metrics.update(vivado.pop("metrics"))
            sources.update(dict.fromkeys(("luts", "ffs", "dsps", "brams"), vivado["source"]))
            details["vivado_synth"] = vivado["details"]
            files.append(rpt)
            tool += f" + {vivado['tool']}"
        elif cfg.vsynth:
            raise ReportError(f"Vivado synthesis was asked for (vsynth) but left no {rpt}")

        files += [f for f in (log, project / "vivado_hls.log", project / "vitis_hls.log") if f.is_file()]
        return SynthResult(metrics=metrics, sources=sources, tool=tool, files=files, details=details)

    @staticmethod
    def _vivado_numbers(rpt: Path, hls4ml_numbers: dict) -> dict[str, Any]:
        """hls4ml's VivadoSynthReport where it has a number, our table parser for the rest.

        hls4ml calls the "Block RAM Tile" count BRAM_18K, but a tile is 36 Kb (two 18 Kb blocks):
        it is doubled here so `brams` has the same unit as the HLS estimate.
        """
        own = parse_utilization(rpt)

        def pick(key: str, fallback: float) -> float:
            try:
                return float(hls4ml_numbers[key])
            except (KeyError, TypeError, ValueError):
                return fallback

        version = own.version or "version unknown"
        return {
            "metrics": {
                "luts": pick("LUT", own.luts),
                "ffs": pick("FF", own.ffs),
                "dsps": pick("DSP48E", own.dsps),
                "brams": 2 * pick("BRAM_18K", own.bram_tiles),
            },
            "source": f"vivado {version} synth",
            "tool": f"vivado {version}",
            "details": {"design_state": own.state, "urams": own.urams, "bram_tiles": own.bram_tiles},
        }

    def _hls_version(self, xml: Path, project: Path, log: Path) -> str:
        """From the csynth report's ReportVersion, else the log's banner, else 'version unknown'."""
        with contextlib.suppress(ET.ParseError, OSError):
            v = ET.parse(xml).getroot().findtext("./ReportVersion/Version")
            if v and v.strip():
                return v.strip()
        for path in (log, project / "vivado_hls.log", project / "vitis_hls.log"):
            with contextlib.suppress(OSError):
                m = _LOG_VERSION.search(path.read_text(errors="replace"))
                if m:
                    return m[1]
        return "version unknown"


class VivadoHLSBackend(HLSBackend):
    """Vivado HLS (up to 2020.1): `vivado_hls -f build_prj.tcl "<options>"`, as hls4ml's Vivado backend."""

    name = "vivado"
    hls4ml_backend = "Vivado"
    executable = "vivado_hls"
    hls_tool = "vivado_hls"

    def argv(self, exe: str, project: Path, cfg: SynthesisSection) -> list[str]:
        return [exe, "-f", "build_prj.tcl", vivado_hls_options(cfg.vsynth)]


class VitisHLSBackend(HLSBackend):
    """Vitis HLS (2023.2+): options go into build_opt.tcl, then `vitis-run --tcl build_prj.tcl --mode hls`."""

    name = "vitis"
    hls4ml_backend = "Vitis"
    executable = "vitis-run"
    hls_tool = "vitis_hls"

    def argv(self, exe: str, project: Path, cfg: SynthesisSection) -> list[str]:
        write_vitis_options(project, cfg.vsynth)
        return [exe, "--tcl", "build_prj.tcl", "--mode", "hls"]
