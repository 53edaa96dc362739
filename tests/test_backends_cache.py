"""The design cache key covers everything that changes a synthesis result, and nothing that does not."""

import stat
from pathlib import Path

from hqsearch.backends import build_design
from hqsearch.backends.base import Project
from hqsearch.backends.tools import xilinx_version
from hqsearch.backends.yosys import Yosys, YosysBackend
from hqsearch.config.schema import SynthesisSection
from hqsearch.firmware.rtl import write_rtl

TOOL = Yosys(("yosys",), "native", "0.23")


def key(rtl: Path, cfg: SynthesisSection, tool: Yosys = TOOL) -> str:
    return YosysBackend().cache_key(Project(rtl), cfg, tool)


def test_key_follows_the_design_files_tables_included(tiny_model, tmp_path):
    model, _, ebops = tiny_model
    cfg = SynthesisSection(backend="yosys")
    comb = build_design(model, ebops, cfg, tmp_path).comb
    a, b = (write_rtl(comb, cfg, tmp_path / d, fuses_adders=True) for d in "ab")
    assert key(a, cfg) == key(b, cfg)  # the same design in two folders: one entry

    for rtl, entry in ((a, "3f"), (b, "40")):  # the same sources, one lookup table entry apart
        mem = rtl / "src" / "memfiles" / "table0.mem"
        mem.parent.mkdir(parents=True, exist_ok=True)
        mem.write_text(f"00\n{entry}\n")
    assert key(a, cfg) != key(b, cfg)

    assert key(a, cfg) != key(a, cfg.model_copy(update={"part": "xcku115-flvb2104-2-e"}))
    assert key(a, cfg) != key(a, cfg, Yosys(("yosys",), "native", "0.47"))
    assert key(a, cfg) == key(a, cfg, Yosys(("/elsewhere/bin/yosys",), "native", "0.23"))  # path is no part


def test_xilinx_version_from_the_install_path_or_the_tool(tmp_path):
    installed = tmp_path / "Xilinx" / "Vivado" / "2020.1" / "bin" / "vivado_hls"
    installed.parent.mkdir(parents=True)
    installed.write_text("#!/bin/sh\nexit 1\n")  # never run: the path says it
    installed.chmod(installed.stat().st_mode | stat.S_IEXEC)
    assert xilinx_version(str(installed)) == "2020.1"

    elsewhere = tmp_path / "bin" / "vitis-run"
    elsewhere.parent.mkdir()
    elsewhere.write_text('#!/bin/sh\n[ "$1" = "-version" ] && echo "vitis-run v2023.2 (64-bit)"\n')
    elsewhere.chmod(elsewhere.stat().st_mode | stat.S_IEXEC)
    assert xilinx_version(str(elsewhere)) == "2023.2"


def test_key_follows_the_converter_version(tmp_path, monkeypatch):
    """A design traced by another converter release is another design, even with the same files."""
    from hqsearch.backends import cache

    (tmp_path / "model.v").write_text("module model; endmodule\n")
    key = cache.design_key(tmp_path, [tmp_path / "model.v"], backend="yosys")
    assert key == cache.design_key(tmp_path, [tmp_path / "model.v"], backend="yosys")
    real = cache._version
    monkeypatch.setattr(cache, "_version", lambda p: "0.0.0" if p == "alkaid" else real(p))
    assert cache.design_key(tmp_path, [tmp_path / "model.v"], backend="yosys") != key


def test_key_follows_the_sources_that_shape_the_number_and_the_tool(tmp_path, monkeypatch):
    """A fix to a parser, a backend or the tracing makes every cached number stale; the tool's version too.
    The package's own version (the same for every such fix) is no part of it."""
    import shutil

    from hqsearch.backends import cache

    (tmp_path / "model.v").write_text("module model; endmodule\n")

    def key_with(package: Path, tool: str = "yosys 0.23") -> str:
        monkeypatch.setattr(cache, "PACKAGE", package)
        return cache.design_key(tmp_path, [tmp_path / "model.v"], backend="yosys", tool=tool)

    trees = {}
    for name in ("same", "parser", "tracing", "elsewhere"):  # copies of the installed package
        trees[name] = tmp_path / name / "hqsearch"
        shutil.copytree(cache.PACKAGE, trees[name], ignore=shutil.ignore_patterns("__pycache__"))
    base = key_with(cache.PACKAGE)
    assert key_with(trees["same"]) == base == key_with(cache.PACKAGE)  # the same sources anywhere: one key

    parser = trees["parser"] / "backends" / "yosys.py"
    parser.write_text(parser.read_text().replace("LUT", "LUT ", 1))
    tracing = trees["tracing"] / "firmware" / "emulate.py"
    tracing.write_text(tracing.read_text() + "\n# a fix\n")
    assert key_with(trees["parser"]) != base and key_with(trees["tracing"]) != base

    (trees["elsewhere"] / "analysis" / "report.py").write_text("# a report change shapes no synthesised number\n")
    assert key_with(trees["elsewhere"]) == base
    real = cache._version
    monkeypatch.setattr(cache, "_version", lambda p: "9.9.9" if p == "hqsearch" else real(p))
    assert key_with(cache.PACKAGE) == base  # the package's version is not what produced the number

    assert key_with(cache.PACKAGE, tool="yosys 0.47") != base
