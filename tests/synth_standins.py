"""Stand-ins for vivado_hls, vitis-run and vivado, for tests on machines without Xilinx tools.

A stand-in is a small executable put first on PATH under the tool's name, so the backends run exactly
the code path they run with the real tool: the same argv, the same working directory, the same log.
It logs each call (tool, argv, cwd) as one JSON line to a counter file, copies REAL report files from
tests/fixtures/hls_reports into the layout the real tool writes, prints what the spec says, and exits
with the spec's code. Like the real build scripts, it writes vivado_synth.rpt only when vsynth is on.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "hls_reports"  # real reports; SOURCES.tsv names each

_SCRIPT = r"""#!{python}
import json, os, re, shutil, sys
from pathlib import Path

spec = json.loads(Path(os.environ["HQ_STANDIN_SPEC"]).read_text())
tool = Path(sys.argv[0]).name
cwd = Path.cwd()
if sys.argv[1:] in (["-version"], ["--version"]):  # a version query, as the real tools answer it
    print(f"{{tool}} v{{spec.get('version', '2020.1')}} (64-bit)")
    sys.exit(0)
with open(spec["counter"], "a") as f:
    f.write(json.dumps({{"tool": tool, "argv": sys.argv[1:], "cwd": str(cwd)}}) + "\n")
if tool == "vivado":  # alkaid's build_vivado_prj.tcl
    name = re.search(r'set project_name "([^"]+)"', (cwd / "build_vivado_prj.tcl").read_text())[1]
    vsynth = False
else:  # hls4ml's project.tcl; options as the real build_prj.tcl reads them
    name = re.search(r'set project_name "([^"]+)"', (cwd / "project.tcl").read_text())[1]
    if tool == "vitis-run":
        vsynth = re.search(r"vsynth\s+(\d)", (cwd / "build_opt.tcl").read_text())[1] == "1"
    else:
        vsynth = re.search(r"vsynth=+(\w+)", " ".join(sys.argv[1:]))[1] in ("1", "True", "true")
for dest, src in spec.get("copies", {{}}).items():
    if dest == "vivado_synth.rpt" and not vsynth:
        continue
    target = cwd / dest.format(name=name)
    target.parent.mkdir(parents=True, exist_ok=True)
    text = Path(src).read_text(errors="replace")
    target.write_text(text[: spec["truncate"].get(dest, len(text))] if "truncate" in spec else text)
if spec.get("stdout_file"):
    sys.stdout.write(Path(spec["stdout_file"]).read_text(errors="replace"))
sys.stdout.write(spec.get("stdout", ""))
sys.exit(spec.get("exit", 0))
"""


# where the real tools put what the backends read
TOOLS = {"vivado": "vivado_hls", "vitis": "vitis-run"}
APP = {"vivado": "{name}_prj/vivado_hls.app", "vitis": "{name}_prj/hls.app"}
CSYNTH_XML = "{name}_prj/solution1/syn/report/{name}_csynth.xml"
APP_FIXTURE = "vivado_hls_2020_1_hls4ml_test_report/vivado_hls.app"  # same format for hls.app


def fixture(relative: str) -> Path:
    path = FIXTURES / relative
    assert path.is_file(), f"report fixture {path} is missing from the repository"
    return path


class StandIn:
    """Installs stand-in executables into `bin_dir`, first on PATH, and reads back their calls."""

    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch, tools: tuple[str, ...]) -> None:
        self.bin_dir = tmp / "standin_bin"
        self.bin_dir.mkdir(parents=True, exist_ok=True)
        self.spec_path = tmp / "standin_spec.json"
        self.counter = tmp / "standin_calls.jsonl"
        for tool in tools:
            exe = self.bin_dir / tool
            exe.write_text(_SCRIPT.format(python=sys.executable))
            exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        monkeypatch.setenv("PATH", f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
        monkeypatch.setenv("HQ_STANDIN_SPEC", str(self.spec_path))
        self.set()

    def set(
        self,
        copies: dict[str, Path] | None = None,
        stdout: str = "",
        stdout_file: Path | None = None,
        exit_code: int = 0,
        truncate: dict[str, int] | None = None,
    ) -> None:
        """What the next calls do: `copies` maps a destination (with {name}) to a fixture file."""
        spec = {
            "counter": str(self.counter),
            "copies": {dest: str(src) for dest, src in (copies or {}).items()},
            "stdout": stdout,
            "stdout_file": str(stdout_file) if stdout_file else None,
            "exit": exit_code,
        }
        if truncate:
            spec["truncate"] = truncate
        self.spec_path.write_text(json.dumps(spec))

    @property
    def calls(self) -> list[dict]:
        if not self.counter.is_file():
            return []
        return [json.loads(line) for line in self.counter.read_text().splitlines()]


# Vivado utilization reports in the fixtures, transcribed by hand: the release from the "Tool Version"
# line, and the "Used" column of the LUT, register, Block RAM Tile and DSP rows. A Block RAM Tile is
# 36 Kb, so `brams` (18 Kb units) is twice the tiles, written out here rather than computed.
UTILIZATION = {
    "vivado_hls_2020_1_hls4ml_test_report/vivado_synth.rpt": ("2020.1", 1526, 2428, 66, 0),
    "vivado_2019_2_post_route_nicologhielmetti_hls4ml-pynq/design_1_myproject_axi_0_3_utilization_synth.rpt": (
        "2019.2",
        15176,
        14503,
        21,
        4,
    ),
    "vivado_2019_2_post_route_nicologhielmetti_hls4ml-pynq/design_1_wrapper_utilization_synth.rpt": (
        "2019.2",
        0,
        0,
        0,
        0,
    ),
    "vivado_2019_2_post_route_nicologhielmetti_hls4ml-pynq/design_1_wrapper_utilization_placed.rpt": (
        "2019.2",
        17654,
        18333,
        21,
        10,
    ),
    "vitis_hls_2022_2_alex-yang-upenn_vitis_accel_backend_test/impl_1_full_util_routed.rpt": (
        "2022.2",
        204475,
        238042,
        104,
        1804,
    ),
    "vitis_hls_2022_2_alex-yang-upenn_vitis_accel_backend_test/impl_1_full_util_synthed.rpt": (
        "2022.2",
        223298,
        244234,
        104,
        1804,
    ),
    "vivado_hls_2019_2_Hector-Plata_hls4ml-tutorial/model_3_pynq_design_1_wrapper_utilization_placed.rpt": (
        "2019.2",
        19879,
        20767,
        9,
        14,
    ),
    "vitis_hls_2024_2_MinhNguy3n_hls4ml-tutorial/model_5_conifer_bdt_vivado_synth.rpt": ("2024.2", 43833, 21581, 0, 0),
    "vivado_hls_2020_1_hls4ml-tutorial_cnn/quantized_pruned_cnn_vivado_synth.rpt": ("2020.1", 118931, 30702, 353, 68),
    "vivado_hls_2020_1_hls4ml-tutorial_cnn/pruned_cnn_vivado_synth.rpt": ("2020.1", 123948, 43435, 5386, 84),
    "vivado_hls_2019_2_1_KebL_hls4ml_data_model8_resource_10k/myproject_utilization_synth.rpt": (
        "2019.2.1",
        30082,
        34495,
        91,
        134,
    ),
}


def util_expected(rpt: Path) -> dict:
    """The hand-transcribed numbers of one fixture utilization report (see UTILIZATION)."""
    version, luts, ffs, dsps, brams = UTILIZATION[rpt.relative_to(FIXTURES).as_posix()]
    return {"luts": float(luts), "ffs": float(ffs), "dsps": float(dsps), "brams": float(brams), "version": version}


def csynth_expected(xml: Path) -> dict:
    root = ET.parse(xml).getroot()
    lat = root.find("PerformanceEstimates/SummaryOfOverallLatency")
    res = root.find("AreaEstimates/Resources")
    dsp = res.findtext("DSP") if res.find("DSP") is not None else res.findtext("DSP48E")
    return {
        "luts": float(res.findtext("LUT")),
        "ffs": float(res.findtext("FF")),
        "dsps": float(dsp),
        "brams": float(res.findtext("BRAM_18K")),
        "latency_cycles": float(lat.findtext("Worst-caseLatency")),
        "ii": float(lat.findtext("Interval-max")),
        "estimated_clock_ns": float(root.findtext("PerformanceEstimates/SummaryOfTimingAnalysis/EstimatedClockPeriod")),
        "version": root.findtext("ReportVersion/Version").strip(),
    }


_YOSYS = r"""#!{python}
import json, os, sys, time
from pathlib import Path

spec_path = Path(__file__).resolve().with_name("yosys_spec.json")
spec = json.loads(spec_path.read_text()) if spec_path.is_file() else {{}}
if sys.argv[1:] != ["-V"] and spec:
    cwd = os.getcwd()
    if spec["slow"] in cwd:  # the first design whose folder matches hangs until it is killed
        try:
            fd = os.open(spec["marker"], os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        except FileExistsError:
            fd = None
        if fd is not None:
            os.write(fd, json.dumps({{"pid": os.getpid(), "cwd": cwd}}).encode())
            os.close(fd)
            time.sleep(3600)
            sys.exit(1)
    time.sleep(spec["delay"])
os.execv({real!r}, [{real!r}, *sys.argv[1:]])  # the real Yosys, in this same process
"""


class YosysStandIn:
    """A `yosys` first on PATH that runs the real native Yosys in its own process (exec, same pid), unless
    told (`slow`) to hang on one design: the first whose folder contains a given string, recorded with its
    pid in `marker`. The spec lives next to the executable, so processes started before it was written
    (Ray workers) follow it too. Without a spec it is the real Yosys."""

    def __init__(self, bin_dir: Path, real: str) -> None:
        bin_dir.mkdir(parents=True, exist_ok=True)
        self.bin_dir, self.spec_path = bin_dir, bin_dir / "yosys_spec.json"
        exe = bin_dir / "yosys"
        exe.write_text(_YOSYS.format(python=sys.executable, real=real))
        exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)

    def slow(self, contains: str, marker: Path, delay: float = 0.0) -> None:
        """The first design whose folder contains `contains` hangs; every other one waits `delay` s first."""
        self.spec_path.write_text(json.dumps({"slow": contains, "marker": str(marker), "delay": delay}))

    def clear(self) -> None:
        self.spec_path.unlink(missing_ok=True)
