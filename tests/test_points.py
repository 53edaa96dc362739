"""Harvested candidates as points of the study: counted apart from trainings, seen by Optuna's own tools."""

import json
import subprocess
from pathlib import Path

import pytest
from optuna.trial import TrialState

from hqsearch.cli import main
from hqsearch.driver import run_study
from hqsearch.study.points import Origin, origin
from hqsearch.study.storage import artifact_store, load_existing


@pytest.fixture(scope="module")
def harvest_study(tmp_path_factory):
    """Two trainings whose beta ramps hard, so accuracy peaks before the last epoch."""
    from conftest import run_tiny

    return run_tiny(
        tmp_path_factory,
        "harvest",
        study={"n_trials": 2, "objectives": {"accuracy": "max", "luts": "min"}, "constraints": ["luts <= 1e6"]},
        training={"epochs": 12, "batch_size": 64, "beta_schedule": "ramp", "harvest": {"max_candidates": 3}},
        search_space={"beta": {"low": 3e-4, "high": 1e-3, "log": True}},
        model={"widths": [16]},
    )


def test_candidates_are_points_with_their_parent(harvest_study):
    cfg, summary = harvest_study
    study = load_existing(cfg.study.storage_url, cfg.study.name)
    done = study.get_trials(states=(TrialState.COMPLETE,))
    trainings = {t.number: t for t in done if origin(t) is Origin.TRAINING}
    harvested = [t for t in done if origin(t) is Origin.HARVEST]

    assert summary.complete == len(trainings) == 2  # n_trials counts trainings
    assert summary.harvested == len(harvested) >= 1
    for t in harvested:
        parent = trainings[t.user_attrs["parent"]]
        assert t.params == parent.params and t.distributions == parent.distributions  # the sampler learns from it
        assert 1 <= t.user_attrs["epoch"] < parent.user_attrs["info"]["epochs"]  # never the final epoch again
        assert t.values == [t.user_attrs["metrics"][m] for m in cfg.study.metric_names]
        assert t.user_attrs["sources"]["accuracy"].endswith("validation split")
        assert set(t.constraints) == {"luts<=1e+06"}
        # its model is an artifact of its parent, by id
        assert t.user_attrs["model_artifact"] in parent.system_attrs.get(f"artifacts:{t.user_attrs['model_artifact']}")
        with artifact_store(cfg).open_reader(t.user_attrs["model_artifact"]) as f:
            assert f.read(2) == b"PK"  # a .keras file is a zip
    per_parent = {n: sum(t.user_attrs["parent"] == n for t in harvested) for n in trainings}
    for n, count in per_parent.items():
        info = trainings[n].user_attrs["info"]["harvest"]
        assert count == info["candidates"] <= 3 and not info["errors"]


def test_optuna_cli_lists_candidates_and_ranks_them_with_the_trainings(harvest_study):
    """Optuna's own tools see a candidate as a trial: `optuna trials` lists it, and `optuna best-trials` ranks
    it with the trainings (whether an earlier epoch beats the final model on this machine is the training's
    business, so the front is compared with Optuna's `best_trials`, not assumed to hold a candidate)."""
    cfg, _ = harvest_study
    study = load_existing(cfg.study.storage_url, cfg.study.name)

    def cli(command: str) -> list[dict]:
        args = ["optuna", command, "--study-name", cfg.study.name, "--storage", cfg.study.storage_url, "-f", "json"]
        return json.loads(subprocess.run(args, capture_output=True, text=True, check=True).stdout)

    harvested = {t.number for t in study.trials if origin(t) is Origin.HARVEST}
    listed = {t["number"] for t in cli("trials") if t["user_attrs"].get("origin") == "harvest"}
    assert harvested and listed == harvested
    assert {t["number"] for t in cli("best-trials")} == {t.number for t in study.best_trials}


def test_status_report_and_resume_count_trainings(harvest_study, tmp_path, capsys):
    cfg, _ = harvest_study
    study = load_existing(cfg.study.storage_url, cfg.study.name)
    n_harvested = sum(origin(t) is Origin.HARVEST for t in study.trials)
    assert main(["status", "--storage", cfg.study.storage_url, "--study", cfg.study.name]) == 0
    assert f"2/2 trainings COMPLETE + {n_harvested} harvested candidates" in capsys.readouterr().out

    again = run_study(cfg)  # the target counts trainings: nothing more to train
    assert again.complete == 2 and again.told == []

    assert main(["report", "--storage", cfg.study.storage_url, "--study", cfg.study.name, "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert f"from 2 trainings (24 epochs), {n_harvested} harvested candidates" in printed
    assert "measured in: accuracy above" in printed and "luts below 1,000,000 in log10" in printed
    assert (tmp_path / "hypervolume.png").read_bytes()[:4] == b"\x89PNG"
    header = Path(tmp_path / "hypervolume.csv").read_text().splitlines()[0]
    assert header.startswith("trainings,epochs,seconds,hypervolume")
