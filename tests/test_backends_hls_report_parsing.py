"""The Vivado HLS / Vitis HLS backends on real report files, through stand-in tool executables.

No Xilinx tool runs here: `vivado_hls` and `vitis-run` are stand-ins (tests/synth_standins.py) that copy
real reports from public hls4ml projects (tests/fixtures/hls_reports, see its SOURCES.tsv) into the
layout the real tools write. The backends run unchanged: argv, working directory, log, report parsing,
cache. Expected numbers are read from the fixture files here, independently of the code under test.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from synth_standins import APP, APP_FIXTURE, CSYNTH_XML, TOOLS, StandIn, csynth_expected, fixture, util_expected

from hqsearch.backends import get_backend
from hqsearch.backends.base import Design
from hqsearch.backends.hls import VitisHLSBackend, VivadoHLSBackend
from hqsearch.backends.tools import SynthError
from hqsearch.config.schema import SynthesisSection
from hqsearch.exceptions import FirmwareError
from hqsearch.firmware.hls_project import hls_write

BACKENDS = {"vivado": VivadoHLSBackend, "vitis": VitisHLSBackend}

# (backend, vsynth, csynth xml, vivado_synth.rpt or None, tool log or None)
CASES = {
    "vivado_hls_2020_1_with_vivado_synth": (
        "vivado",
        True,
        "vivado_hls_2020_1_hls4ml_test_report/myproject_csynth.xml",
        "vivado_hls_2020_1_hls4ml_test_report/vivado_synth.rpt",
        None,
    ),
    "vivado_hls_2019_2_csynth_only": (
        "vivado",
        False,
        "vivado_hls_2019_2_Hector-Plata_hls4ml-tutorial/model_3_myproject_csynth.xml",
        None,
        "vivado_hls_2019_2_Hector-Plata_hls4ml-tutorial/model_3_vivado_hls.log",
    ),
    "vivado_hls_2019_2_dataflow_ii_64": (
        "vivado",
        False,
        "vivado_2019_2_post_route_nicologhielmetti_hls4ml-pynq/myproject_csynth.xml",
        None,
        None,
    ),
    "vivado_hls_with_ultrascale_clb_synth_report": (
        "vivado",
        True,
        "vivado_hls_2019_2_Hector-Plata_hls4ml-tutorial/model_3_myproject_csynth.xml",
        "vivado_hls_2020_1_hls4ml-tutorial_cnn/pruned_cnn_vivado_synth.rpt",
        None,
    ),
    "vitis_hls_2024_1_csynth_only_benign_errors_in_log": (
        "vitis",
        False,
        "vitis_hls_2024_1_Lrozzy_hls4ml_OpenML/myproject_csynth.xml",
        None,
        "vitis_hls_2024_1_Lrozzy_hls4ml_OpenML/vitis_hls.log",
    ),
    "vitis_hls_2024_2_with_vivado_2024_synth": (
        "vitis",
        True,
        "vitis_hls_2024_2_MinhNguy3n_hls4ml-tutorial/model_3.1_myproject_csynth.xml",
        "vitis_hls_2024_2_MinhNguy3n_hls4ml-tutorial/model_5_conifer_bdt_vivado_synth.rpt",
        "vitis_hls_2024_2_MinhNguy3n_hls4ml-tutorial/model_3.1_vitis_hls.log",
    ),
}


# ---- expected values, read straight from the fixture files ----


# ---- a real written hls4ml project of a tiny HGQ2 model ----


@pytest.fixture(scope="module")
def tiny_hgq_model():
    import keras
    from hgq.layers import QDense
    from hgq.utils import trace_minmax

    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((16,)), QDense(8, activation="relu"), QDense(4)])
    trace_minmax(model, np.random.default_rng(1).uniform(-1, 1, (256, 16)).astype("float32"))
    return model


def written_design(model, cfg: SynthesisSection, out: Path) -> Design:
    return Design(
        model=model, comb=None, ebops=0.0, project=hls_write(model, cfg, out, get_backend(cfg.backend).hls4ml_backend)
    )


def synth_cfg(backend: str, tmp: Path, **kw) -> SynthesisSection:
    return SynthesisSection(backend=backend, cache_dir=tmp / "cache", **{"cache": False, **kw})


def report_copies(backend: str, xml: str, rpt: str | None = None, log: str | None = None) -> dict[str, Path]:
    copies = {CSYNTH_XML: fixture(xml), APP[backend]: fixture(APP_FIXTURE)}
    if rpt:
        copies["vivado_synth.rpt"] = fixture(rpt)
    if log:
        copies[f"{TOOLS[backend].replace('-run', '_hls')}.log"] = fixture(log)
    return copies


@pytest.mark.parametrize("case", sorted(CASES))
def test_hls_report_parsing_equals_fixture_numbers(case, tiny_hgq_model, tmp_path, monkeypatch):
    backend, vsynth, xml, rpt, log = CASES[case]
    standin = StandIn(tmp_path, monkeypatch, (TOOLS[backend],))
    standin.set(report_copies(backend, xml, rpt, log), stdout_file=fixture(log) if log else None)
    cfg = synth_cfg(backend, tmp_path, vsynth=vsynth, clock_period=4.0)
    design = written_design(tiny_hgq_model, cfg, tmp_path / "prj")

    res = BACKENDS[backend]().synthesize(design, cfg, tmp_path)

    hls = csynth_expected(fixture(xml))
    hls_tool = {"vivado": "vivado_hls", "vitis": "vitis_hls"}[backend]
    hls_source = f"{hls_tool} {hls['version']} csynth estimate"
    m, s = res.metrics, res.sources
    assert m["latency_cycles"] == hls["latency_cycles"] and s["latency_cycles"] == hls_source
    assert m["latency_ns"] == hls["latency_cycles"] * 4.0 and s["latency_ns"] == hls_source
    assert m["ii"] == hls["ii"] and m["estimated_clock_ns"] == hls["estimated_clock_ns"]
    assert s["ii"] == s["estimated_clock_ns"] == hls_source
    area = ("luts", "ffs", "dsps", "brams")
    assert res.details["hls_estimate"] == {k: hls[k] for k in area}
    if rpt:  # Vivado's post-synthesis numbers replace the HLS estimates
        viv = util_expected(fixture(rpt))
        assert {k: m[k] for k in area} == {k: viv[k] for k in area}
        assert {s[k] for k in area} == {f"vivado {viv['version']} synth"}
        assert res.tool == f"{hls_tool} {hls['version']} + vivado {viv['version']}"
    else:
        assert {k: m[k] for k in area} == {k: hls[k] for k in area}
        assert {s[k] for k in area} == {hls_source}
        assert res.tool == f"{hls_tool} {hls['version']}"
    assert m["luts"] > 0
    assert not res.cache_hit and res.details["exit_code"] == 0

    # the tool ran once, in the project, with hls4ml's build options and nothing more
    (call,) = standin.calls
    assert call["cwd"] == str(tmp_path / "prj")
    if backend == "vivado":
        assert call["argv"] == [
            "-f",
            "build_prj.tcl",
            f"reset=0 csim=0 synth=1 cosim=0 validation=0 export=0 vsynth={int(vsynth)} fifo_opt=0",
        ]
    else:
        assert call["argv"] == ["--tcl", "build_prj.tcl", "--mode", "hls"]
        opts = dict(re.findall(r"^\s+(\w+)\s+(\d)$", (tmp_path / "prj" / "build_opt.tcl").read_text(), re.MULTILINE))
        assert opts == {
            "reset": "0",
            "csim": "0",
            "synth": "1",
            "cosim": "0",
            "validation": "0",
            "export": "0",
            "vsynth": str(int(vsynth)),
            "fifo_opt": "0",
        }
    names = {f.name for f in res.files}
    assert {"myproject_csynth.xml", "hqsearch_build.log"} <= names
    assert ("vivado_synth.rpt" in names) == bool(rpt)


def test_hls_version_falls_back_to_the_log_banner(tiny_hgq_model, tmp_path, monkeypatch):
    log = fixture("vivado_hls_2019_2_Hector-Plata_hls4ml-tutorial/model_3_vivado_hls.log")
    xml = fixture("vivado_hls_2019_2_Hector-Plata_hls4ml-tutorial/model_3_myproject_csynth.xml")
    no_version = tmp_path / "no_version_csynth.xml"
    no_version.write_text(re.sub(r"<ReportVersion>.*?</ReportVersion>", "", xml.read_text(), flags=re.S))
    banner = re.search(r"High-Level Synthesis from .*? v(\d{4}\.\d+)", log.read_text())[1]
    standin = StandIn(tmp_path, monkeypatch, ("vivado_hls",))
    standin.set({CSYNTH_XML: no_version, APP["vivado"]: fixture(APP_FIXTURE)}, stdout_file=log)
    cfg = synth_cfg("vivado", tmp_path, vsynth=False)
    res = VivadoHLSBackend().synthesize(written_design(tiny_hgq_model, cfg, tmp_path / "prj"), cfg, tmp_path)
    assert res.sources["luts"] == f"vivado_hls {banner} csynth estimate"

    standin.set({CSYNTH_XML: no_version, APP["vivado"]: fixture(APP_FIXTURE)})  # no banner anywhere
    res = VivadoHLSBackend().synthesize(written_design(tiny_hgq_model, cfg, tmp_path / "prj2"), cfg, tmp_path)
    assert res.sources["luts"] == "vivado_hls version unknown csynth estimate"


def test_hls_report_parsing_trusts_reports_not_the_exit_code(tiny_hgq_model, tmp_path, monkeypatch):
    xml = "vivado_hls_2020_1_hls4ml_test_report/myproject_csynth.xml"
    standin = StandIn(tmp_path, monkeypatch, ("vivado_hls",))
    standin.set(report_copies("vivado", xml), exit_code=1)
    cfg = synth_cfg("vivado", tmp_path, vsynth=False)
    res = VivadoHLSBackend().synthesize(written_design(tiny_hgq_model, cfg, tmp_path / "prj"), cfg, tmp_path)
    assert res.metrics["luts"] == csynth_expected(fixture(xml))["luts"] and res.details["exit_code"] == 1


FAILURES = {
    # name: (vsynth, copies(backend) -> dict, stdout, truncate, what the error says)
    "no_report_at_all": (False, lambda b: {}, "standin: wrote nothing\n", None, "no C synthesis report"),
    "truncated_csynth_report": (
        False,
        lambda b: report_copies(b, "vivado_hls_2020_1_hls4ml_test_report/myproject_csynth.xml"),
        "",
        {CSYNTH_XML: 900},
        "cannot parse",
    ),
    "log_says_presynthesis_failed": (
        False,
        lambda b: report_copies(b, "vivado_hls_2020_1_hls4ml_test_report/myproject_csynth.xml"),
        "ERROR: [HLS 200-70] Pre-synthesis failed.\ncommand 'ap_source' returned error code\n",
        None,
        "HLS 200-70",
    ),
    "log_says_vivado_synthesis_failed": (
        True,
        lambda b: report_copies(b, "vivado_hls_2020_1_hls4ml_test_report/myproject_csynth.xml"),
        "ERROR: [Common 17-69] Command failed: Synthesis failed - please see the console\n",
        None,
        "Command failed",
    ),
}


@pytest.mark.parametrize("backend", sorted(BACKENDS))
@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_hls_report_parsing_failed_build_is_a_synth_error(failure, backend, tiny_hgq_model, tmp_path, monkeypatch):
    vsynth, copies, stdout, truncate, says = FAILURES[failure]
    standin = StandIn(tmp_path, monkeypatch, (TOOLS[backend],))
    standin.set(copies(backend), stdout=stdout, truncate=truncate)  # exit code 0 every time
    cfg = synth_cfg(backend, tmp_path, vsynth=vsynth)
    with pytest.raises(SynthError) as err:
        BACKENDS[backend]().synthesize(written_design(tiny_hgq_model, cfg, tmp_path / "prj"), cfg, tmp_path)
    assert says in str(err.value) and "exit code 0" in str(err.value)
    if stdout:
        assert stdout.splitlines()[0] in str(err.value)  # the log's tail is in the message
    assert len(standin.calls) == 1


def test_hls_vsynth_without_its_report_is_a_synth_error(tiny_hgq_model, tmp_path, monkeypatch):
    standin = StandIn(tmp_path, monkeypatch, ("vivado_hls",))
    standin.set(report_copies("vivado", "vivado_hls_2020_1_hls4ml_test_report/myproject_csynth.xml"))
    cfg = synth_cfg("vivado", tmp_path, vsynth=True)
    with pytest.raises(SynthError, match="vsynth"):
        VivadoHLSBackend().synthesize(written_design(tiny_hgq_model, cfg, tmp_path / "prj"), cfg, tmp_path)


def test_hls_undefined_latency_is_a_synth_error(tiny_hgq_model, tmp_path, monkeypatch):
    xml = fixture("vivado_hls_2020_1_hls4ml_test_report/myproject_csynth.xml")
    undef = tmp_path / "undef_csynth.xml"
    undef.write_text(re.sub(r"<Worst-caseLatency>\d+<", "<Worst-caseLatency>undef<", xml.read_text()))
    standin = StandIn(tmp_path, monkeypatch, ("vivado_hls",))
    standin.set({CSYNTH_XML: undef, APP["vivado"]: fixture(APP_FIXTURE)})
    cfg = synth_cfg("vivado", tmp_path, vsynth=False)
    with pytest.raises(SynthError, match="WorstLatency is 'undef'"):
        VivadoHLSBackend().synthesize(written_design(tiny_hgq_model, cfg, tmp_path / "prj"), cfg, tmp_path)


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_hls_backend_without_its_tool_names_it(backend, tiny_hgq_model, tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    cfg = synth_cfg(backend, tmp_path)
    with pytest.raises(SynthError, match=re.escape(repr(TOOLS[backend]))):
        BACKENDS[backend]().synthesize(written_design(tiny_hgq_model, cfg, tmp_path / "prj"), cfg, tmp_path)


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_hls_design_cache_skips_the_tool_for_an_identical_design(backend, tiny_hgq_model, tmp_path, monkeypatch):
    standin = StandIn(tmp_path, monkeypatch, (TOOLS[backend],))
    standin.set(
        report_copies(
            backend,
            "vivado_hls_2020_1_hls4ml_test_report/myproject_csynth.xml",
            "vivado_hls_2020_1_hls4ml_test_report/vivado_synth.rpt",
        )
    )
    cfg = synth_cfg(backend, tmp_path, cache=True, vsynth=True)
    first = BACKENDS[backend]().synthesize(written_design(tiny_hgq_model, cfg, tmp_path / "a"), cfg, tmp_path)
    assert len(standin.calls) == 1 and not first.cache_hit and first.cache_key
    # the same model written again into another folder: same sources, same key, no tool run
    second = BACKENDS[backend]().synthesize(written_design(tiny_hgq_model, cfg, tmp_path / "b"), cfg, tmp_path)
    assert len(standin.calls) == 1
    assert second.cache_hit and second.cache_key == first.cache_key
    assert second.metrics == first.metrics and second.sources == first.sources and second.tool == first.tool
    # another clock, another design: the tool runs again
    other = cfg.model_copy(update={"clock_period": 3.0})
    third = BACKENDS[backend]().synthesize(written_design(tiny_hgq_model, other, tmp_path / "c"), other, tmp_path)
    assert len(standin.calls) == 2 and not third.cache_hit and third.cache_key != first.cache_key
    # a pragma fix-up changes the sources: a new design as well
    fixed = cfg.model_copy(update={"pragma_fixups": ["inline_recursive"]})
    fourth = BACKENDS[backend]().synthesize(written_design(tiny_hgq_model, fixed, tmp_path / "d"), fixed, tmp_path)
    assert len(standin.calls) == 3 and fourth.cache_key not in (first.cache_key, third.cache_key)


def test_hls_backend_reapplies_pragma_fixups_before_the_build(tiny_hgq_model, tmp_path, monkeypatch):
    standin = StandIn(tmp_path, monkeypatch, ("vivado_hls",))
    standin.set(report_copies("vivado", "vivado_hls_2020_1_hls4ml_test_report/myproject_csynth.xml"))
    cfg = synth_cfg("vivado", tmp_path, vsynth=False, pragma_fixups=["inline_recursive"])
    design = written_design(tiny_hgq_model, cfg, tmp_path / "prj")
    design.project.write()  # as compile() does: the fix-ups are gone from the sources
    top = tmp_path / "prj" / "firmware" / "myproject.cpp"
    assert "INLINE RECURSIVE" not in top.read_text()
    res = VivadoHLSBackend().synthesize(design, cfg, tmp_path)
    assert top.read_text().count("#pragma HLS INLINE RECURSIVE") == 1
    assert res.details["pragma_fixups"] == {"inline_recursive": True}


def test_hls_write_names_the_setting_it_cannot_use(tiny_hgq_model, tmp_path):
    cfg = SynthesisSection(backend="vivado", strategy="distributed_arithmetic", reuse_factor=2)
    with pytest.raises(FirmwareError, match="reuse_factor"):
        hls_write(tiny_hgq_model, cfg, tmp_path / "da", "Vivado")
    # HGQ2's per-element activation quantizers exist in hls4ml only with io_parallel
    cfg = SynthesisSection(backend="vitis", io_type="io_stream")
    with pytest.raises(FirmwareError, match="io_type=io_stream"):
        hls_write(tiny_hgq_model, cfg, tmp_path / "stream", "Vitis")
