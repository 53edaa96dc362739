import json
import subprocess

import pandas as pd
import pytest

from hqsearch.cli import main
from hqsearch.study import load_existing


def test_report_files_and_ranking(finished_study, tmp_path, capsys):
    cfg = finished_study
    out = tmp_path / "report"
    assert main(["report", "--storage", cfg.study.storage_url, "--study", cfg.study.name, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Pareto front" in printed and "alkaid estimate" in printed

    front = pd.read_csv(out / "pareto.csv")
    assert front.equals(pd.read_parquet(out / "pareto.parquet").astype(front.dtypes.to_dict()))
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == 3 and set(trials["state"]) == {"COMPLETE"}
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"

    study = load_existing(cfg.study.storage_url, cfg.study.name)
    assert sorted(front["trial"]) == sorted(t.number for t in study.best_trials)
    assert list(front["rank"]) == list(range(1, len(front) + 1))
    # best first: accuracy descending, ties by fewer LUTs
    keys = list(zip(-front["accuracy"], front["luts"], strict=True))
    assert keys == sorted(keys)

    # chosen on validation, test reported beside each point: on screen and in the files
    assert "test_accuracy" in printed and front["test_accuracy"].between(0, 1).all()
    by_number = {t.number: t for t in study.trials}
    for _, row in front.iterrows():
        t = by_number[row["trial"]]
        assert t.values[0] == row["accuracy"] == t.user_attrs["metrics"]["accuracy"]
        assert t.user_attrs["sources"]["accuracy"].endswith("validation split")
        assert row["test_accuracy"] == t.user_attrs["metrics"]["test_accuracy"]
        assert t.user_attrs["sources"]["test_accuracy"].endswith("test split")


def test_optuna_cli_lists_the_same_front(finished_study, tmp_path):
    cfg = finished_study
    res = subprocess.run(
        ["optuna", "best-trials", "--study-name", cfg.study.name, "--storage", cfg.study.storage_url, "-f", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    optuna_front = sorted(t["number"] for t in json.loads(res.stdout))
    main(["report", "--storage", cfg.study.storage_url, "--study", cfg.study.name, "--out", str(tmp_path)])
    assert optuna_front == sorted(pd.read_csv(tmp_path / "pareto.csv")["trial"])


def test_status_and_missing_study(finished_study, capsys):
    cfg = finished_study
    assert main(["status", "--storage", cfg.study.storage_url, "--study", cfg.study.name]) == 0
    assert "3/3 trainings COMPLETE" in capsys.readouterr().out
    assert main(["status", "--storage", cfg.study.storage_url, "--study", "nope"]) == 2
    assert "no study 'nope'" in capsys.readouterr().err


def test_estimate_fits_use_measured_trials_only():
    from hqsearch.report import estimate_fits

    trials = pd.DataFrame(
        {
            "trial": [0, 1, 2, 3, 4],
            "state": ["COMPLETE"] * 4 + ["FAIL"],
            "ebops": [1000.0, 2000.0, 4000.0, 3000.0, 10.0],
            "estimated_luts": [400.0, 900.0, 1800.0, 1200.0, 1.0],
            "luts": [500.0, 1000.0, 2000.0, 1200.0, 99.0],
            "luts_source": ["yosys 0.23 (native)"] * 3 + ["alkaid estimate", None],
        }
    )
    ebops_fit, est_fit = estimate_fits(trials)
    assert (ebops_fit.x, ebops_fit.n) == ("ebops", 3)  # the estimate-only and failed trials are left out
    assert ebops_fit.ratio == pytest.approx(0.5) and ebops_fit.r2 == pytest.approx(1.0)
    assert est_fit.ratio == pytest.approx((400 * 500 + 900 * 1000 + 1800 * 2000) / (400**2 + 900**2 + 1800**2))
    assert 0.9 < est_fit.r2 < 1
    assert "measured LUTs ≈ 0.5 × ebops" in str(ebops_fit)
    assert estimate_fits(trials[trials["luts_source"] == "alkaid estimate"]) == []


def test_sort_by_a_metric(finished_study, tmp_path, capsys):
    cfg = finished_study
    args = ["report", "--storage", cfg.study.storage_url, "--study", cfg.study.name, "--out", str(tmp_path)]
    assert main([*args, "--sort", "luts"]) == 0
    front = pd.read_csv(tmp_path / "pareto.csv")
    assert list(front["luts"]) == sorted(front["luts"])
    capsys.readouterr()
    assert main([*args, "--sort", "bogus"]) == 2
    assert "cannot sort by 'bogus'" in capsys.readouterr().err
