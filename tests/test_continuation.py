"""Trainings that continue a point of the study, and the epoch budget that ends a study of them."""

from __future__ import annotations

import shutil

import pytest
from optuna.trial import TrialState

from hqsearch.analysis.pareto import rank_front
from hqsearch.cli import main
from hqsearch.config.schema import FloatRange
from hqsearch.driver import run_study
from hqsearch.search.space import ARCHITECTURE
from hqsearch.study.attrs import CONTINUES_ATTR, START_FAILED_ATTR
from hqsearch.study.points import Origin, lineage, origin
from hqsearch.study.storage import load_existing


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """One fresh training, then continuations wherever a point can still ramp, until 11 epochs are spent 5
    at a time."""
    from conftest import run_tiny

    cfg, summary = run_tiny(
        tmp_path_factory,
        "chain",
        study={
            "n_trials": None,
            "budget": 11,
            "objectives": {"accuracy": "max", "luts": "min"},
            "constraints": ["luts <= 1e6"],
        },
        training={
            "epochs": 5,
            "batch_size": 64,
            "harvest": {"max_candidates": 2},
            "continuation": {"share": 1.0, "startup": 1},
        },
        search_space={"beta": {"low": 1e-6, "high": 1e-4, "log": True}, "ramp": {"start": 0.5}},
        model={"widths": [16]},
        execution={"max_concurrent": 1},
    )
    study = load_existing(cfg.study.storage_url, cfg.study.name)
    return cfg, summary, {t.number: t for t in study.get_trials()}


def _trainings(trials):
    return [t for t in trials.values() if origin(t) is Origin.TRAINING and t.state == TrialState.COMPLETE]


def test_the_epoch_budget_ends_the_study(chain):
    cfg, summary, trials = chain
    trainings = _trainings(trials)
    epochs = [t.user_attrs["info"]["epochs"] for t in trainings]
    assert epochs == [5, 5, 1]  # the last one gets what the budget had left
    assert summary.epochs == 11 and summary.reached(cfg.study)
    assert any("what the epoch budget had left" in n for n in trainings[-1].user_attrs["params"]["notes"])


def test_a_continuation_starts_from_its_points_weights(chain):
    _, _, trials = chain
    fresh, *later = _trainings(trials)
    assert CONTINUES_ATTR not in fresh.user_attrs and "start_val_accuracy" not in fresh.user_attrs["info"]
    continued = [t for t in later if CONTINUES_ATTR in t.user_attrs]  # a point at the top of beta has no ramp left
    assert continued
    for t in continued:
        point = trials[t.user_attrs[CONTINUES_ATTR]]
        assert point.state == TrialState.COMPLETE
        assert {k: t.params[k] for k in ARCHITECTURE if k in point.params} == {
            k: point.params[k] for k in ARCHITECTURE if k in point.params
        }
        info, parent = t.user_attrs["info"], point.user_attrs["metrics"]
        # before any training it predicts exactly as the point did; after one epoch it is still near it
        assert info["start_val_accuracy"] == pytest.approx(parent["float_accuracy"], abs=1e-9)
        assert info["first_val_accuracy"] >= parent["float_accuracy"] - 0.1
        # its ramp goes on from the point's beta
        start = point.user_attrs.get("beta") or point.user_attrs["info"]["final_beta"]
        assert t.user_attrs["params"]["beta_start"] == pytest.approx(start)
    # a fresh model after one epoch is far from where the continuations start
    assert fresh.user_attrs["info"]["first_val_accuracy"] < min(
        t.user_attrs["info"]["start_val_accuracy"] for t in continued
    )


def test_lineage_is_recorded_and_reported(chain, capsys):
    cfg, _, trials = chain
    fresh = {f"#{t.number}" for t in _trainings(trials) if CONTINUES_ATTR not in t.user_attrs}
    last = [t for t in _trainings(trials) if CONTINUES_ATTR in t.user_attrs][-1]
    chain_of_last = lineage(trials, last.number)
    assert chain_of_last[0] == f"#{last.number}" and chain_of_last[-1].split()[0] in fresh
    assert len(chain_of_last) >= 2
    for t in (t for t in trials.values() if origin(t) is Origin.HARVEST):
        assert lineage(trials, t.number)[0] == f"#{t.user_attrs['parent']} e{t.user_attrs['epoch']}"
    front = rank_front(load_existing(cfg.study.storage_url, cfg.study.name))
    roots = {chain.split(" ← ")[-1].split()[0] for chain in front["lineage"]}
    assert roots <= fresh  # every point descends from a fresh training
    args = ["report", "--storage", cfg.study.storage_url, "--study", "chain", "--out", str(cfg.study.run_dir)]
    assert main(args) == 0
    assert "←" in capsys.readouterr().out  # the front table's `from` column shows lineages


def test_a_start_whose_checkpoint_is_gone_fails_once_and_the_study_goes_on(chain):
    """Every stored model is deleted: each start chosen fails once, with that reason, and is never chosen
    again, in this run or the next; the study spends its budget on the trainings that can start."""
    cfg, _, before = chain
    shutil.rmtree(cfg.study.artifact_path)
    # beta's range widened, so that the chain's points at the top of the old one may be continued again
    wider = cfg.search_space.model_copy(update={"beta": FloatRange(low=1e-6, high=1e-2, log=True)})
    cfg = cfg.model_copy(update={"search_space": wider})
    summary = run_study(cfg.with_overrides(budget=20))
    study = load_existing(cfg.study.storage_url, cfg.study.name)
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert failed and summary.reached(cfg.with_overrides(budget=20).study)
    assert all("the checkpoint to continue from is gone" in t.user_attrs["error"] for t in failed)
    points = [t.user_attrs[CONTINUES_ATTR] for t in failed]
    assert sorted(points) == sorted(set(points))  # each start failed once
    assert [t.user_attrs[START_FAILED_ATTR] for t in failed] == points
    assert set(points) <= set(before)  # the starts that were lost, not new ones

    summary = run_study(cfg.with_overrides(budget=24))  # a new driver reads the failures from the study
    study = load_existing(cfg.study.storage_url, cfg.study.name)
    assert summary.failed_this_run == 0 and summary.reached(cfg.with_overrides(budget=24).study)
    failed_at = {t.user_attrs[CONTINUES_ATTR]: t.number for t in failed}
    later = [t.number for t in study.trials if t.number > failed_at.get(t.user_attrs.get(CONTINUES_ATTR), t.number)]
    assert later == []  # never chosen again


def test_the_point_whose_improvement_gains_most_is_continued_and_children_spread_the_choice(tmp_path):
    import numpy as np
    import optuna
    from conftest import tiny_raw

    from hqsearch.config.schema import parse_config
    from hqsearch.search.continuation import choose, gains

    cfg = parse_config(
        tiny_raw(
            tmp_path,
            "gains",
            study={"objectives": {"accuracy": "max", "luts": "min"}},
            training={"continuation": {"share": 1.0, "startup": 1}},
            report={"hypervolume": {"reference": {"accuracy": 0.8, "luts": 40000}}},
        )
    )
    study = optuna.create_study(directions=["maximize", "minimize"])

    def point(acc: float, luts: float, **attrs) -> None:
        metrics = {"accuracy": acc, "luts": luts}
        attrs = {"metrics": metrics, "origin": "training", "model_artifact": f"m{acc}", **attrs}
        study.add_trial(optuna.trial.create_trial(values=[acc, luts], user_attrs=attrs))

    point(0.95, 100)  # the cheap end: a cheaper model at this accuracy is all new area
    point(0.96, 1000)
    point(0.97, 10000)
    point(0.90, 5000)  # dominated: never continued
    point(0.70, 10)  # outside the reference box: never continued
    trials = study.get_trials()
    gain = gains(trials, cfg)
    assert set(gain) == {0, 1, 2} and max(gain, key=gain.get) == 0
    rng = np.random.default_rng(0)
    assert choose(trials, cfg, rng).start.point == 0
    for _ in range(3):  # continuations already started from the cheap end make room for the others
        study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.WAITING, user_attrs={"continues": 0}))
    assert choose(study.get_trials(), cfg, rng).start.point != 0


def test_without_a_configured_reference_every_front_point_can_be_continued(tmp_path):
    import numpy as np
    import optuna
    from conftest import tiny_raw

    from hqsearch.config.schema import parse_config
    from hqsearch.search.continuation import choose, gains

    # no report.hypervolume reference: it defaults to the worst values seen, which every point here touches
    raw = tiny_raw(tmp_path, "noref", training={"continuation": {"share": 1.0, "startup": 1}})
    cfg = parse_config(raw)
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    for acc, luts, cycles in ((0.9, 900, 3), (0.8, 300, 5)):
        attrs = {"metrics": {"accuracy": acc, "luts": luts, "latency_cycles": cycles}, "model_artifact": "m"}
        study.add_trial(optuna.trial.create_trial(values=[acc, luts, cycles], user_attrs=attrs))
    trials = study.get_trials()
    assert set(gains(trials, cfg)) == {0, 1}
    assert choose(trials, cfg, np.random.default_rng(0)) is not None


def test_the_point_above_the_largest_gap_is_continued_with_a_ramp_through_it(tmp_path):
    """A front with a wide empty stretch between a cheap and a large model: the large one is continued. Its
    ramp ends at the lowest beta at which its own architecture was as cheap as the gap's cheap side (not
    the other architecture's beta), and is as long as the study's ramps spend on that many decades."""
    import numpy as np
    import optuna
    from conftest import tiny_raw
    from optuna.distributions import CategoricalDistribution

    from hqsearch.config.schema import parse_config
    from hqsearch.search.continuation import MAX_TRIES, choose

    cfg = parse_config(
        tiny_raw(
            tmp_path,
            "gaps",
            study={"objectives": {"accuracy": "max", "luts": "min"}},
            training={"continuation": {"share": 1.0, "startup": 1}},
            search_space={"beta": {"low": 1e-6, "high": 1e-4, "log": True}, "epochs": {"low": 10, "high": 40}},
            report={"hypervolume": {"reference": {"accuracy": 0.8, "luts": 40000}}},
        )
    )
    study = optuna.create_study(directions=["maximize", "minimize"])

    def point(acc: float, luts: float, beta: float, widths: str) -> None:
        attrs = {
            "metrics": {"accuracy": acc, "luts": luts},
            "origin": "training",
            "model_artifact": f"m{luts}",
            "info": {"final_beta": beta},
        }
        dist = {"widths": CategoricalDistribution(["16", "64-32"])}
        trial = optuna.trial.create_trial(
            values=[acc, luts], params={"widths": widths}, distributions=dist, user_attrs=attrs
        )
        study.add_trial(trial)

    point(0.90, 50, 1e-5, "16")  # cheap: 2 decades of log10 LUTs below the next point, and 0.05 less accurate
    point(0.95, 5000, 1e-6, "64-32")  # above that gap
    point(0.96, 8000, 5e-7, "64-32")  # above a narrow one
    point(0.79, 45, 3e-5, "64-32")  # below the accuracy reference: off the front, but it says what beta gets there
    plan = choose(study.get_trials(), cfg, np.random.default_rng(0))
    assert (plan.start.point, plan.below) == (1, 0)
    # from 1e-6 to 3e-5: 1.48 of the range's two decades, at the ramps' 25 epochs per 2 decades
    assert plan.params["beta"] == pytest.approx(3e-5) and plan.params["epochs"] == 19
    assert plan.params["widths"] == "64-32"
    # tried as often as a point is (a failed try counts): the next continuation starts elsewhere
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, user_attrs={"continues": 1}))
    for _ in range(MAX_TRIES - 1):
        study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.WAITING, user_attrs={"continues": 1}))
    assert choose(study.get_trials(), cfg, np.random.default_rng(0)).start.point != 1


def test_a_point_whose_beta_is_at_the_top_of_the_range_is_not_continued(tmp_path):
    """Its continuation could only hold beta there: at the cheap end, where nothing else can gain, a fresh
    training goes instead."""
    import numpy as np
    import optuna
    from conftest import tiny_raw

    from hqsearch.config.schema import parse_config
    from hqsearch.search.continuation import choose, gains

    cfg = parse_config(
        tiny_raw(
            tmp_path,
            "top",
            study={"objectives": {"accuracy": "max", "luts": "min"}},
            training={"continuation": {"share": 1.0, "startup": 1}},
            search_space={"beta": {"low": 1e-6, "high": 1e-4, "log": True}},
            report={"hypervolume": {"reference": {"accuracy": 0.8, "luts": 40000}}},
        )
    )
    study = optuna.create_study(directions=["maximize", "minimize"])
    attrs = {"metrics": {"accuracy": 0.9, "luts": 60}, "origin": "training", "model_artifact": "m"}
    study.add_trial(optuna.trial.create_trial(values=[0.9, 60], user_attrs={**attrs, "info": {"final_beta": 1e-4}}))
    trials = study.get_trials()
    assert gains(trials, cfg)[0] > 0
    assert choose(trials, cfg, np.random.default_rng(0)) is None


@pytest.mark.parametrize("paying", ["fresh", "continued"])
def test_the_share_moves_toward_the_kind_of_training_that_adds_hypervolume(tmp_path, paying):
    """After the startup, one fresh and one continued training of equal length: the one whose points widen
    the front draws the next trainings; with `adapt` off the share stays as configured."""
    import optuna
    from conftest import tiny_raw

    from hqsearch.config.schema import parse_config
    from hqsearch.search.continuation import Starts

    def cfg(adapt: bool):
        raw = tiny_raw(
            tmp_path,
            "share",
            study={"objectives": {"accuracy": "max", "luts": "min"}},
            training={"epochs": 20, "continuation": {"share": 0.5, "startup": 1, "adapt": adapt}},
            report={"hypervolume": {"reference": {"accuracy": 0.8, "luts": 40000}}},
        )
        return parse_config(raw)

    def training(number: int, acc: float, luts: float, **attrs):
        user = {
            "metrics": {"accuracy": acc, "luts": luts},
            "origin": "training",
            "model_artifact": f"m{number}",
            "info": {"epochs": 20, "final_beta": 1e-6},
            **attrs,
        }
        t = optuna.trial.create_trial(values=[acc, luts], user_attrs=user)
        t.number = number
        return t

    first = training(0, 0.90, 1000)  # the startup: not counted
    gaining, idle = (0.95, 200), (0.85, 2000)  # one widens the front, the other is dominated
    fresh = training(1, *(gaining if paying == "fresh" else idle))
    continued = training(2, *(gaining if paying == "continued" else idle), continues=0)
    for adapt in (True, False):
        starts = Starts(cfg(adapt))
        for t in (first, fresh, continued):
            starts.add(t)
        share = starts.share()
        if not adapt:
            assert share == 0.5
        elif paying == "fresh":
            assert share < 0.4
        else:
            assert share > 0.6
