import json
import subprocess

import pandas as pd

from hqsearch.cli import main
from hqsearch.study import load_existing


def test_report_files_and_ranking(finished_study, tmp_path, capsys):
    cfg = finished_study
    out = tmp_path / "report"
    assert main(["report", "--storage", cfg.study.storage_url, "--study", cfg.study.name, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Pareto front" in printed and "da4ml estimate" in printed

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
    assert "3/3 COMPLETE" in capsys.readouterr().out
    assert main(["status", "--storage", cfg.study.storage_url, "--study", "nope"]) == 2
    assert "no study 'nope'" in capsys.readouterr().err
