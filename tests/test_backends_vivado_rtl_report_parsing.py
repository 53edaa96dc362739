"""The vivado-rtl backend (Vivado on alkaid's Verilog) on real Vivado reports, through a stand-in `vivado`.

The stand-in (tests/synth_standins.py) copies real utilization and timing-summary reports from
tests/fixtures/hls_reports to where alkaid's build_vivado_prj.tcl writes them
(output_<name>/reports/<name>_{post_route,post_synth}_{util,timing}.rpt). Expected numbers are read
from the fixture files here, independently of the parser under test.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from synth_standins import StandIn, fixture, util_expected

from hqsearch.backends.base import Design
from hqsearch.backends.tools import SynthError
from hqsearch.backends.vivado_reports import ReportError, parse_timing_summary, parse_utilization
from hqsearch.backends.vivado_rtl import VivadoRTLBackend
from hqsearch.config.schema import SynthesisSection

REPORTS = "output_{name}/reports/{name}"
PYNQ = "vivado_2019_2_post_route_nicologhielmetti_hls4ml-pynq"  # Vivado 2019.2, placed and routed
KEBL = "vivado_hls_2019_2_1_KebL_hls4ml_data_model8_resource_10k"  # Vivado 2019.2.1, synthesised
ROUTED = {
    f"{REPORTS}_post_route_util.rpt": f"{PYNQ}/design_1_wrapper_utilization_placed.rpt",
    f"{REPORTS}_post_route_timing.rpt": f"{PYNQ}/design_1_wrapper_timing_summary_routed.rpt",
}
SYNTHESISED = {
    f"{REPORTS}_post_synth_util.rpt": f"{KEBL}/myproject_utilization_synth.rpt",
    f"{REPORTS}_post_synth_timing.rpt": f"{KEBL}/myproject_timing_synth.rpt",
}


def copies(*tables: dict[str, str]) -> dict[str, Path]:
    return {dest: fixture(src) for table in tables for dest, src in table.items()}


# ---- expected values, read straight from the fixture files ----


def timing_expected(rpt: Path) -> tuple[float, float]:
    """(WNS, period of the first clock) from the Design Timing Summary and Clock Summary tables."""
    lines = rpt.read_text().splitlines()
    head = next(i for i, line in enumerate(lines) if line.split()[:1] == ["WNS(ns)"])
    wns = float(lines[head + 2].split()[0])
    clock = next(i for i, line in enumerate(lines) if line.startswith("Clock ") and "Period(ns)" in line)
    return wns, float(lines[clock + 2].split("}")[1].split()[0])  # name  {rise fall}  period  frequency


@pytest.fixture(scope="module")
def tiny_comb():
    import keras
    from hgq.layers import QDense
    from hgq.utils import trace_minmax

    from hqsearch.firmware.emulate import trace

    keras.utils.set_random_seed(2)
    model = keras.Sequential([keras.Input((12,)), QDense(6, activation="relu"), QDense(3)])
    trace_minmax(model, np.random.default_rng(2).uniform(-1, 1, (256, 12)).astype("float32"))
    return trace(model, SynthesisSection())


def rtl_cfg(tmp: Path, **kw) -> SynthesisSection:
    return SynthesisSection(backend="vivado-rtl", cache_dir=tmp / "cache", **{"cache": False, **kw})


def test_vivado_rtl_report_parsing_prefers_post_route(tiny_comb, tmp_path, monkeypatch):
    standin = StandIn(tmp_path, monkeypatch, ("vivado",))
    standin.set(copies(ROUTED, SYNTHESISED))
    cfg = rtl_cfg(tmp_path, latency_cutoff=2, clock_period=4.0)
    res = VivadoRTLBackend().synthesize(Design(None, tiny_comb, 0.0), cfg, tmp_path)

    util = util_expected(fixture(ROUTED[f"{REPORTS}_post_route_util.rpt"]))
    wns, period = timing_expected(fixture(ROUTED[f"{REPORTS}_post_route_timing.rpt"]))
    m, s = res.metrics, res.sources
    for k in ("luts", "ffs", "dsps", "brams"):
        assert m[k] == util[k], k
        assert s[k] == f"vivado {util['version']} post-route utilization"
    assert m["estimated_clock_ns"] == pytest.approx(period - wns)
    assert s["estimated_clock_ns"].startswith(f"vivado {util['version']} post-route timing")
    assert res.details["wns_ns"] == wns and res.details["timing_met"] is True
    # latency is the RTL's own pipeline depth
    meta = json.loads((tmp_path / "rtl" / "metadata.json").read_text())
    assert meta["latency"] >= 1
    assert m["latency_cycles"] == meta["latency"] and m["latency_ns"] == meta["latency"] * 4.0
    assert res.tool == f"vivado {util['version']}" and not res.cache_hit

    (call,) = standin.calls
    assert call["argv"] == ["-mode", "batch", "-source", "build_vivado_prj.tcl"]
    assert call["cwd"] == str(tmp_path / "rtl")
    assert {f.name for f in res.files} >= {"model_post_route_util.rpt", "model_post_route_timing.rpt"}


def test_vivado_rtl_report_parsing_falls_back_to_post_synth(tiny_comb, tmp_path, monkeypatch):
    standin = StandIn(tmp_path, monkeypatch, ("vivado",))
    standin.set(copies(SYNTHESISED))
    res = VivadoRTLBackend().synthesize(Design(None, tiny_comb, 0.0), rtl_cfg(tmp_path), tmp_path)
    util = util_expected(fixture(SYNTHESISED[f"{REPORTS}_post_synth_util.rpt"]))
    wns, period = timing_expected(fixture(SYNTHESISED[f"{REPORTS}_post_synth_timing.rpt"]))
    assert {k: res.metrics[k] for k in ("luts", "ffs", "dsps", "brams")} == {
        k: util[k] for k in ("luts", "ffs", "dsps", "brams")
    }
    assert res.sources["luts"] == f"vivado {util['version']} post-synth utilization"
    assert res.metrics["estimated_clock_ns"] == pytest.approx(period - wns)
    assert res.details["stage"] == "post_synth"


def test_vivado_rtl_report_parsing_of_every_fixture_report():
    """Every flat utilization / timing report in the fixtures parses to the numbers in its tables."""
    from synth_standins import FIXTURES, UTILIZATION

    utils = [p for p in FIXTURES.rglob("*.rpt") if "util" in p.name or p.name.endswith("vivado_synth.rpt")]
    parsed = 0
    for path in utils:
        if not re.search(r"\|\s*Site Type\s*\|", path.read_text()):  # kernel-only tables: another format
            with pytest.raises(ReportError):
                parse_utilization(path)
            continue
        got, want = parse_utilization(path), util_expected(path)
        assert (got.luts, got.ffs, got.dsps, got.brams_18k, got.version) == (
            want["luts"],
            want["ffs"],
            want["dsps"],
            want["brams"],
            want["version"],
        ), path
        parsed += 1
    assert parsed == len(UTILIZATION)  # every table report in the fixtures has its transcribed numbers
    for path in FIXTURES.rglob("*timing*.rpt"):
        t = parse_timing_summary(path)
        assert (t.wns_ns, t.clock_period_ns) == timing_expected(path), path


FAILURES = {
    "no_reports": ({}, "", None, "no utilization report"),
    "truncated_utilization": (ROUTED, "", {f"{REPORTS}_post_route_util.rpt": 1200}, "LUTs row"),
    "log_says_placement_failed": (
        SYNTHESISED,
        "ERROR: [Place 30-640] Place Check : This design requires more LUT cells than are available.\n"
        "ERROR: [Common 17-69] Command failed: Placer could not place all instances\n",
        None,
        "Common 17-69",
    ),
}


@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_vivado_rtl_report_parsing_failed_build_is_a_synth_error(failure, tiny_comb, tmp_path, monkeypatch):
    tables, stdout, truncate, says = FAILURES[failure]
    standin = StandIn(tmp_path, monkeypatch, ("vivado",))
    standin.set(copies(tables), stdout=stdout, truncate=truncate)
    with pytest.raises(SynthError) as err:
        VivadoRTLBackend().synthesize(Design(None, tiny_comb, 0.0), rtl_cfg(tmp_path), tmp_path)
    assert says in str(err.value) and "exit code 0" in str(err.value)
    if stdout:
        assert "Place 30-640" in str(err.value)  # the log's tail


def test_vivado_rtl_without_vivado_names_it(tiny_comb, tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(SynthError, match="'vivado' on PATH"):
        VivadoRTLBackend().synthesize(Design(None, tiny_comb, 0.0), rtl_cfg(tmp_path), tmp_path)


def test_vivado_rtl_design_cache_skips_the_tool_for_an_identical_design(tiny_comb, tmp_path, monkeypatch):
    standin = StandIn(tmp_path, monkeypatch, ("vivado",))
    standin.set(copies(ROUTED))
    cfg = rtl_cfg(tmp_path, cache=True)
    first = VivadoRTLBackend().synthesize(Design(None, tiny_comb, 0.0), cfg, tmp_path / "t1")
    second = VivadoRTLBackend().synthesize(Design(None, tiny_comb, 0.0), cfg, tmp_path / "t2")
    assert len(standin.calls) == 1
    assert second.cache_hit and second.cache_key == first.cache_key and second.metrics == first.metrics
    deeper = cfg.model_copy(update={"latency_cutoff": 1.0})  # another pipeline: other RTL, other key
    third = VivadoRTLBackend().synthesize(Design(None, tiny_comb, 0.0), deeper, tmp_path / "t3")
    assert len(standin.calls) == 2 and not third.cache_hit


def test_vivado_rtl_failed_build_fails_the_trial_in_a_study(tiny_config, tmp_path, monkeypatch):
    """Through the driver and a worker process: the stand-in writes no report, the trial is told FAIL."""
    from optuna.trial import TrialState

    from hqsearch.driver import run_study
    from hqsearch.study.storage import load_existing

    standin = StandIn(tmp_path, monkeypatch, ("vivado",))
    standin.set(stdout="standin vivado: no reports today\n")
    cfg = tiny_config(
        "rtl_fails",
        study={"n_trials": 1},
        data={"source": "digits"},
        synthesis={"backend": "vivado-rtl", "cache": False},
        execution={"max_concurrent": 1, "max_failures": 1},
    )
    summary = run_study(cfg)
    assert summary.complete == 0 and summary.failed_this_run == 1
    (trial,) = load_existing(cfg.study.storage_url, "rtl_fails").trials
    assert trial.state == TrialState.FAIL
    error = trial.user_attrs["error"]
    assert error.startswith("SynthError: vivado build of") and "no utilization report" in error
    assert "standin vivado: no reports today" in error
    assert len(standin.calls) == 1
