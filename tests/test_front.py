"""The one rule for the front, and every view of it on a real study whose later measurements are worse than
the estimates their designs were told with."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from itertools import product
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from conftest import tiny_raw
from helpers import brute_front
from optuna.study import StudyDirection
from optuna.trial import TrialState

from hqsearch.config.schema import parse_config
from hqsearch.search.continuation import Starts
from hqsearch.search.front import Front, measured_front, nondominated
from hqsearch.study.attrs import UNMEASURED
from hqsearch.study.points import Origin, origin

# Yosys, but every LUT count it reports is doubled (plus five): each design measures worse than its estimate
_WORSE_YOSYS = """#!{python}
import json, subprocess, sys
from pathlib import Path

code = subprocess.call([{real!r}, *sys.argv[1:]])
if "synth.ys" in sys.argv and Path("stat.json").exists():
    stat = json.loads(Path("stat.json").read_text())
    cells = stat["design"]["num_cells_by_type"]
    for cell in [c for c in cells if c.startswith("LUT")]:
        cells[cell] = 2 * cells[cell] + 5
    Path("stat.json").write_text(json.dumps(stat))
sys.exit(code)
"""


def test_nondominated_and_the_incremental_front_agree_with_pairwise_dominance():
    rng = np.random.default_rng(0)
    for maximise in ([True, False], [True, False, False], [False, False, True]):
        values = rng.integers(0, 6, size=(40, len(maximise))).astype(float)  # many ties
        directions = [StudyDirection.MAXIMIZE if mx else StudyDirection.MINIMIZE for mx in maximise]
        trials = [optuna.trial.create_trial(values=list(row)) for row in values]
        for i, trial in enumerate(trials):
            trial.number = i
        expected = sorted(brute_front(trials, directions))
        assert np.flatnonzero(nondominated(values, maximise)).tolist() == expected
        front = Front(maximise)
        for i, row in enumerate(values):
            front.add(row, i)
        assert sorted(front.items) == expected


def _point(number: int, acc: float, luts: float, origin: str = "harvest", **attrs) -> optuna.trial.FrozenTrial:
    metrics = {"accuracy": acc, "luts": luts}
    t = optuna.trial.create_trial(
        values=[acc, luts],
        user_attrs={"metrics": metrics, "model_artifact": f"m{number}", "origin": origin, **attrs},
        constraints={UNMEASURED: 1.0} if attrs.get("info", {}).get("synth_skipped") else None,
    )
    t.number = number
    return t


def test_a_measurement_replaces_its_estimate_where_the_search_continues(tmp_path):
    cfg = parse_config(tiny_raw(tmp_path, "starts", study={"objectives": {"accuracy": "max", "luts": "min"}}))
    starts = Starts(cfg)
    starts.add(_point(0, 0.90, 1000))
    starts.add(_point(1, 0.95, 400, info={"synth_skipped": "deferred"}))  # its estimate: best of all
    assert {s.point for s, _ in starts.front.items} == {1}  # the search builds on it until it is measured
    starts.add(_point(2, 0.80, 300, origin="training", continues=1))
    assert starts.children[1] == 1
    starts.add(_point(3, 0.95, 1500, origin="synthesis", measures=1))  # measured: worse than told
    assert {s.point for s, _ in starts.front.items} == {0, 2, 3}  # point 0 is back; the estimate is gone
    assert starts.children[3] == 1 and 1 not in starts.children  # its continuations count for the measurement


@pytest.fixture(scope="module")
def worse_study(tmp_path_factory):
    """A real study measured by a Yosys whose LUTs are twice alkaid's estimate: designs deferred while the
    trainings run are measured at the end, each worse than what it was told with."""
    folder = tmp_path_factory.mktemp("worse")
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "yosys"
    wrapper.write_text(_WORSE_YOSYS.format(python=sys.executable, real="/usr/bin/yosys"))
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    raw = tiny_raw(
        folder,
        "worse",
        study={"n_trials": 2, "objectives": {"accuracy": "max", "luts": "min"}, "constraints": ["luts <= 100000"]},
        # the first training's three designs are measured at once, the second's deferred
        synthesis={"backend": "yosys", "yosys": "native", "fidelity": "front", "fidelity_after": 3},
        training={"epochs": 10, "harvest": {"max_candidates": 2}},
        execution={"max_concurrent": 1},  # each training knows the designs measured before it
        search_space={"beta": {"low": 3e-4, "high": 1e-3, "log": True}, "init_weight_bits": 3, "init_act_bits": 3},
    )
    raw["synthesis"]["fidelity_margin"] = 8.0  # nothing is ruled out: every deferred design is measured later
    cfg = parse_config(raw)
    path = os.environ["PATH"]
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{path}"
    try:
        from hqsearch.driver import run_study

        summary = run_study(cfg)
    finally:
        os.environ["PATH"] = path
    assert summary.complete == 2 and summary.measured_later >= 2
    return cfg


@pytest.mark.skipif(not Path("/usr/bin/yosys").exists(), reason="needs Debian's yosys (apt-get install yosys)")
def test_every_view_shows_the_measured_front_not_the_estimates(worse_study, tmp_path, hq_here):
    cfg = worse_study
    url, name = cfg.study.storage_url, cfg.study.name
    study = optuna.load_study(study_name=name, storage=url)
    trials = study.get_trials(deepcopy=False)
    by_number = {t.number: t for t in trials}

    # the study holds what the issue is about: later measurements worse than the estimate told before
    later = [t for t in trials if t.state == TrialState.COMPLETE and origin(t) is Origin.SYNTHESIS]
    assert later
    for t in later:
        told = by_number[t.user_attrs["measures"]]
        assert t.values[1] > told.values[1] and told.user_attrs["info"]["synth_skipped"]

    # the measured front by brute force: COMPLETE, measured (not told with an estimate), within the constraint
    expected = sorted(brute_front(trials, study.directions))
    assert expected

    # Optuna's own view, the API and the command line (what the dashboard shows too)
    assert sorted(t.number for t in study.best_trials) == expected
    res = subprocess.run(
        ["optuna", "best-trials", "--study-name", name, "--storage", url, "-f", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert sorted(t["number"] for t in json.loads(res.stdout)) == expected
    for n in expected:
        assert by_number[n].user_attrs["sources"]["luts"].startswith("yosys")

    # hqsearch's views: the one rule, the report's front and its hypervolume, status, the driver's ledger
    assert [t.number for t in measured_front(trials, [True, False])] == expected
    from hqsearch.analysis.report import write_report
    from hqsearch.search.hypervolume import hypervolume
    from hqsearch.search.ledger import Ledger

    report = write_report(study, tmp_path / "report", cfg=cfg)
    assert sorted(report.front["trial"]) == expected
    assert sorted(pd.read_csv(tmp_path / "report" / "pareto.csv")["trial"]) == expected
    assert report.score.front == len(expected)
    rows = np.array([[by_number[n].user_attrs["metrics"][m] for m in report.score.scale.metrics] for n in expected])
    assert report.score.hypervolume == pytest.approx(hypervolume(rows, report.score.scale))
    ledger = Ledger(cfg)
    ledger.refresh(trials)
    assert sorted(ledger.front.items) == expected
    res = hq_here("status", "--storage", url, "--study", name, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert f"front {len(expected)} points" in " ".join(res.stdout.split())


@pytest.mark.parametrize("skipped", list(product([False, True], repeat=3)))
def test_a_design_told_with_its_estimate_never_stands(skipped):
    """However the estimates fall, `measured_front` and `best_trials` agree and hold no estimate."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    for i, skip in enumerate(skipped):
        study.add_trial(_point(i, 0.9 + 0.01 * i, 100 - 10 * i, info={"synth_skipped": "deferred" if skip else None}))
    front = [t.number for t in measured_front(study.trials, [True, False])]
    assert front == [t.number for t in study.best_trials]
    assert not any(skipped[n] for n in front)
    assert front == [n for n in range(3) if not skipped[n]][-1:]  # the last measured design dominates the others
