"""A trial on an HLS backend: hls4ml's C++ emulation of the trained HGQ2 model is bit-exact, and the
hls4ml settings the search chose reach the project, its build and its measurement. The one g++ compile
of the test suite (about a minute); the build itself is a stand-in (tests/synth_standins.py) that copies
a real Vitis HLS report, as every HLS test here does.
"""

from __future__ import annotations

import pytest
from conftest import tiny_raw
from synth_standins import APP, APP_FIXTURE, CSYNTH_XML, StandIn, csynth_expected, fixture

from hqsearch.config.schema import parse_config
from hqsearch.firmware.emulate import emulate, load_model, trace
from hqsearch.pipeline.trial import run_trial
from hqsearch.search.space import TrialParams

XML = "vitis_hls_2024_1_Lrozzy_hls4ml_OpenML/myproject_csynth.xml"


@pytest.mark.timeout(600)
def test_a_trial_builds_emulates_and_measures_the_hls4ml_settings_it_chose(tmp_path, monkeypatch):
    standin = StandIn(tmp_path, monkeypatch, ("vitis-run",))
    standin.set({CSYNTH_XML: fixture(XML), APP["vitis"]: fixture(APP_FIXTURE)})
    raw = tiny_raw(tmp_path / "study", "hls", training={"epochs": 4})
    raw["synthesis"].update(backend="vitis", vsynth=False, keep_build=True, pragma_fixups=["inline_recursive"])
    raw["search_space"]["heterogeneity"] = {"weights": ["intra", "inter"], "activations": ["inter"]}
    raw["search_space"]["hls4ml"] = {"strategy": ["latency", "resource"], "reuse_factor": [1, 2]}
    cfg = parse_config(raw)
    # an inter-layer-only trial: the space gives it the resource strategy and beta 0 (HGQ rule 5)
    params = TrialParams(0.0, 0, 0, "inter", "inter", 5e-3, (8,), strategy="resource", reuse_factor=2)

    out = run_trial(cfg, params, tmp_path / "trial", seed=0)

    assert out.error is None
    project = tmp_path / "trial" / "hls4ml_prj"
    defines = (project / "firmware" / "parameters.h").read_text()
    assert "reuse_factor = 2;" in defines and "nnet::resource" in defines and "nnet::latency" not in defines
    # compile() rewrote the project; the fix-up is back in the sources the build reads
    assert (project / "firmware" / "myproject.cpp").read_text().count("#pragma HLS INLINE RECURSIVE") == 1
    (call,) = standin.calls
    assert call["tool"] == "vitis-run" and call["cwd"] == str(project)
    expected = csynth_expected(fixture(XML))
    assert (
        out.metrics["luts"] == expected["luts"]
        and out.sources["luts"] == f"vitis_hls {expected['version']} csynth estimate"
    )
    assert out.info["estimate"]["hls4ml"] == "resource, reuse 2, io_parallel"  # its own line in the fidelity gate
    # bit-exact: the C++ emulation equals Keras on every output, and alkaid's emulation of the same model
    assert out.info["mismatches"] == 0 and out.sources["accuracy"] == "hls4ml C++ emulation, validation split"
    model = load_model(tmp_path / "trial" / "model.keras")
    from hqsearch.pipeline.data import load_dataset

    data = load_dataset(cfg.data)
    alkaid = emulate(trace(model, cfg.synthesis), model, data.x_test, data.y_test)
    assert out.metrics["test_accuracy"] == alkaid.accuracy > 0.3
