"""Stand-ins for vivado_hls, vitis-run and vivado, for tests on machines without Xilinx tools.

A stand-in is a small executable put first on PATH under the tool's name, so the backends run exactly
the code path they run with the real tool: the same argv, the same working directory, the same log.
It logs each call (tool, argv, cwd) as one JSON line to a counter file, copies REAL report files from
shared/fixtures/hls_reports into the layout the real tool writes, prints what the spec says, and exits
with the spec's code. Like the real build scripts, it writes vivado_synth.rpt only when vsynth is on.
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "hls_reports"

_SCRIPT = r"""#!{python}
import json, os, re, shutil, sys
from pathlib import Path

spec = json.loads(Path(os.environ["HQ_STANDIN_SPEC"]).read_text())
tool = Path(sys.argv[0]).name
cwd = Path.cwd()
with open(spec["counter"], "a") as f:
    f.write(json.dumps({{"tool": tool, "argv": sys.argv[1:], "cwd": str(cwd)}}) + "\n")
if tool == "vivado":  # da4ml's build_vivado_prj.tcl
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


def fixture(relative: str) -> Path:
    path = FIXTURES / relative
    if not path.is_file():
        pytest.skip(f"report fixture {path} is absent (shared/fixtures/hls_reports next to the repository)")
    return path


class StandIn:
    """Installs stand-in executables into `bin_dir`, first on PATH, and reads back their calls."""

    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch, tools: tuple[str, ...]) -> None:
        if not FIXTURES.is_dir():
            pytest.skip(f"report fixtures are absent: {FIXTURES} (expected beside the repository, in shared/)")
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


def util_expected(rpt: Path) -> dict:
    """A Vivado utilization report's numbers, read with a regex independent of the parser under test."""
    text = rpt.read_text()

    def used(label: str) -> float:
        m = re.search(rf"^\|\s*{label}\*?\s*\|\s*([0-9.]+)\s*\|", text, re.MULTILINE)
        assert m, f"{label} not in {rpt}"
        return float(m[1])

    return {
        "luts": used("(?:CLB|Slice) LUTs"),
        "ffs": used("(?:CLB|Slice) Registers"),
        "dsps": used("DSPs"),
        "brams": 2 * used("Block RAM Tile"),
        "version": re.search(r"Tool Version\s*:\s*Vivado v\.(\S+)", text)[1],
    }
