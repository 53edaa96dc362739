"""Stopping a training behind the study's front: the margin learned from finished trainings, and a real
training stopped by it that keeps what it found and gives its unspent epochs back."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
from conftest import tiny_raw

from hqsearch.config.schema import parse_config
from hqsearch.search.ledger import Ledger
from hqsearch.search.stopping import BINS, Outlook, Staircase, closed_after, curve, learn, share_bin
from hqsearch.study.attrs import CURVE_KEY


def test_the_gap_is_the_distance_below_the_best_accuracy_at_or_below_that_cost():
    front = Staircase.of([(0.9, 100.0), (0.95, 1000.0), (0.8, 10.0), (0.85, 500.0)])  # 0.85 is dominated
    acc = np.array([0.5, 0.85, 0.99, 0.1, 0.9])
    ebops = np.array([5.0, 200.0, 2000.0, 50.0, 999.0])
    # cheaper than every point: no gap; above the front: none; else below the best at or under that cost
    assert front.gap(acc, ebops) == pytest.approx([0.0, 0.05, 0.0, 0.7, 0.0])
    assert Staircase.of([]).gap(acc, ebops) == pytest.approx([0.0] * 5)


def test_what_a_training_closed_after_each_epoch():
    # the gap falls from 0.5 to 0.2, rises, then reaches the front: all of it is closed from epoch 0 on
    assert closed_after(np.array([0.5, 0.2, 0.3, 0.0, 0.1])) == pytest.approx([0.5, 0.2, 0.3, 0.0, 0.0])
    assert closed_after(np.array([0.1, 0.2, 0.3])) == pytest.approx([0.0, 0.0, 0.0])  # only fell behind


def test_the_margin_is_the_most_any_training_closed_after_that_share_of_its_epochs():
    points = [(0.9, 100.0), (0.95, 1000.0)]
    # two 20-epoch trainings (one epoch per share bin): one reaches the front at its end, one never does
    reaches = {"val_accuracy": np.linspace(0.5, 0.95, 20).tolist(), "ebops": [1000.0] * 20}
    stays = {"val_accuracy": [0.6] * 20, "ebops": [1000.0] * 20}
    outlook = learn(points, [reaches, stays], "fresh", least=2)
    gaps = 0.95 - np.linspace(0.5, 0.95, 20)
    assert outlook.margin[:-1] == pytest.approx(gaps[:-1])  # what `reaches` still closed after each epoch
    assert outlook.margin[-1] == 0.0
    # a third training at epoch 10 of 20, 0.3 below the front, is further behind than any closed from there
    assert outlook.behind(10, 20, 0.65, 1000.0) == pytest.approx((0.3, gaps[10]))
    assert outlook.behind(10, 20, 0.80, 1000.0) is None  # within what `reaches` closed
    assert outlook.behind(19, 20, 0.10, 1000.0) is None  # its last epoch: nothing left to save
    assert outlook.behind(10, 20, 0.10, 50.0) is None  # cheaper than the whole front
    # too few trainings taught a share: no margin there, so no stop
    assert all(math.isinf(m) for m in learn(points, [reaches], "fresh", least=2).margin)
    short = {"val_accuracy": [0.5, 0.6], "ebops": [1000.0, 1000.0]}  # teaches bins 0 and 10 only
    taught = learn(points, [short, short], "fresh", least=2).margin
    assert [b for b in range(BINS) if not math.isinf(taught[b])] == [share_bin(0, 2), share_bin(1, 2)] == [0, 10]


def test_the_ledger_learns_each_kind_from_its_own_trainings(tmp_path):
    cfg = parse_config(tiny_raw(tmp_path, training={"stopping": {"behind_front": True, "learn_from": 1}}))
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    fresh = {"val_accuracy": [0.2, 0.5, 0.9], "ebops": [900.0, 700.0, 500.0]}
    continued = {"val_accuracy": [0.88, 0.89, 0.9], "ebops": [600.0, 550.0, 500.0]}
    for c, attrs in ((fresh, {}), (continued, {"continues": 0})):
        info = {"epochs": 3, "val_accuracy": 0.9, "training_ebops": 500.0, CURVE_KEY: c}
        attrs = {**attrs, "origin": "training", "info": info, "metrics": {"accuracy": 0.9, "luts": 10}}
        study.add_trial(optuna.trial.create_trial(values=[0.9, 10, 1], user_attrs=attrs))
    infeasible = {"origin": "harvest", "info": {"val_accuracy": 1.0, "training_ebops": 1.0}}
    study.add_trial(optuna.trial.create_trial(values=[1.0, 1, 1], user_attrs=infeasible, system_attrs={}))
    ledger = Ledger(cfg)
    ledger.refresh(study.get_trials(deepcopy=False))

    assert ledger.points == [(0.9, 500.0), (0.9, 500.0), (1.0, 1.0)]  # no constraints here: all feasible
    assert ledger.outlook(continued=False) == learn(ledger.points, [fresh], "fresh", 1)
    assert ledger.outlook(continued=True) == learn(ledger.points, [continued], "continued", 1)
    assert ledger.outlook(continued=True).margin != ledger.outlook(continued=False).margin
    off = Ledger(parse_config(tiny_raw(tmp_path)))
    assert off.outlook(continued=False) is None  # `behind_front: false`


def test_a_training_stopped_behind_the_front_keeps_its_candidates_and_returns_its_epochs(tmp_path):
    """A real training told of a front it cannot reach (accuracy 1 at any cost), with a margin learned for
    the first half of its epochs only: it stops at the first epoch of the second half."""
    from hqsearch.executors.base import TrialJob, run_job
    from hqsearch.search.space import TrialParams

    cfg = parse_config(tiny_raw(tmp_path, training={"epochs": 8, "harvest": {"max_candidates": 4}}))
    margin = tuple(math.inf if b < BINS // 2 else 0.0 for b in range(BINS))
    outlook = Outlook(Staircase.of([(1.0, 1e-9)]), margin, "fresh")
    params = TrialParams(1e-3, 0, 0, "intra", "intra", 1e-2, (8,), beta_start=1e-6, hold=2, epochs=8)
    job = TrialJob(0, params, tmp_path / "trial", 0, outlook=outlook)

    out = run_job(cfg, job, on_stage=lambda stage: None)

    assert out.error is None
    stop = next(e for e in range(8) if share_bin(e, 8) >= BINS // 2) + 1
    info = out.info
    assert (info["epochs"], info["unspent_epochs"]) == (stop, 8 - stop)  # the budget counts `epochs`
    assert info["stopped_early"].startswith(f"behind the study's front after epoch {stop}:")
    assert len(info[CURVE_KEY]["val_accuracy"]) == stop
    # the in-run front up to the stop is harvested as usual (the final epoch is the trial itself)
    assert len(out.candidates) == info["harvest"]["candidates"] == info["harvest"]["in_run_front"] - 1 >= 1
    assert all(c.info["epoch"] < stop and c.metrics["luts"] >= 0 for c in out.candidates)


def test_a_curve_is_recorded_only_with_a_validation_split():
    assert curve({"val_accuracy": [0.51234567], "ebops": [1234.5678]}) == {"val_accuracy": [0.51235], "ebops": [1234.6]}
    assert curve({"ebops": [1.0]}) is None
