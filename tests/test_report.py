import json
import subprocess

import pandas as pd
import pytest
from helpers import brute_front

from hqsearch.cli import main
from hqsearch.study.storage import load_existing


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
    assert set(front["trial"]) == brute_front(study.trials, study.directions) and len(front) == len(set(front["trial"]))
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
    optuna_front = [t["number"] for t in json.loads(res.stdout)]
    study = load_existing(cfg.study.storage_url, cfg.study.name)
    assert not any(t.user_attrs["info"].get("synth_skipped") for t in study.trials)  # an estimate study measures all
    assert sorted(optuna_front) == sorted(brute_front(study.trials, study.directions))


def test_status_and_missing_study(finished_study, capsys):
    cfg = finished_study
    assert main(["status", "--storage", cfg.study.storage_url, "--study", cfg.study.name]) == 0
    assert "3/3 trainings COMPLETE" in capsys.readouterr().out
    assert main(["status", "--storage", cfg.study.storage_url, "--study", "nope"]) == 2
    assert "no study 'nope'" in capsys.readouterr().err


def test_estimate_fits_use_measured_trials_only():
    from hqsearch.analysis.report import estimate_fits

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


def test_rank_front_and_optuna_list_the_brute_force_front(tmp_path):
    """Dominated, infeasible and failed trials around the front, each added as hqsearch adds a point: the
    ranked front and `optuna best-trials` are exactly the brute-force front."""
    import optuna
    from optuna.trial import TrialState, create_trial

    from hqsearch.analysis.pareto import rank_front
    from hqsearch.study.attrs import ORIGIN_ATTR
    from hqsearch.study.points import add_point

    url = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(study_name="brute", storage=url, directions=["maximize", "minimize"])
    points = [  # (accuracy, luts, constraint value: feasible when <= 0)
        (0.90, 1000.0, -1.0),
        (0.95, 3000.0, -1.0),
        (0.85, 1500.0, -1.0),  # dominated by the first
        (0.99, 500.0, 2.0),  # dominates everything, but infeasible
        (0.80, 400.0, 0.0),  # feasible at the bound
        (0.90, 1000.0, -1.0),  # a tie with the first: neither dominates
        (0.95, 3500.0, -1.0),  # dominated by the second
    ]
    for accuracy, luts, c in points:
        metrics = {"accuracy": accuracy, "luts": luts}
        attrs = {ORIGIN_ATTR: "import", "metrics": metrics, "info": {"synth_skipped": None}}
        add_point(study, [accuracy, luts], attrs, {"luts<=x": c})
    study.add_trial(create_trial(state=TrialState.FAIL))
    expected = brute_front(study.get_trials(deepcopy=False), study.directions)
    assert expected == {0, 1, 4, 5}  # the brute force itself, checked by hand
    front = rank_front(study)
    assert set(front["trial"]) == expected and len(front) == len(expected)
    assert list(front["trial"]) == [1, 0, 5, 4]  # accuracy descending, ties by fewer LUTs, then trial number
    res = subprocess.run(
        ["optuna", "best-trials", "--study-name", "brute", "--storage", url, "-f", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert sorted(t["number"] for t in json.loads(res.stdout)) == sorted(expected)
