"""Every configurable sampler drives a real study; learning_rate as a search dimension reaches training."""

import importlib.util

import pytest
from optuna.trial import TrialState

from hqsearch.driver import run_study
from hqsearch.study.storage import load_existing, make_sampler

SAMPLERS = ["nsga2", "random"] + (["gp"] if importlib.util.find_spec("torch") else [])


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_sampler_runs_a_study_with_learning_rate_searched(sampler, tiny_config):
    cfg = tiny_config(
        f"sampler_{sampler}",
        study={"sampler": sampler, "n_trials": 2},
        search_space={"learning_rate": {"low": 1e-3, "high": 1e-2, "log": True}},
    )
    assert type(make_sampler(cfg.study)).__name__.lower().startswith(sampler.replace("2", "ii"))
    assert run_study(cfg).complete == 2
    trials = load_existing(cfg.study.storage_url, cfg.study.name).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    lrs = [t.params["lr"] for t in trials]
    assert all(1e-3 <= lr <= 1e-2 for lr in lrs) and lrs[0] != lrs[1]
    for t in trials:  # the sampled rate is the one the trial trained with
        assert t.user_attrs["params"]["learning_rate"] == t.params["lr"]


def test_tpe_models_beta_with_the_rest_after_continuations_and_an_import(tiny_config):
    """A continuation samples no ramp start and an imported point has no parameters: TPE still models
    beta and the ramp jointly with what they occur with, instead of sampling them on their own."""
    import numpy as np
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    space = {
        "widths": CategoricalDistribution(["16", "32-16"]),
        "beta": FloatDistribution(1e-7, 3e-4, log=True),
        "ramp_start": FloatDistribution(0.0, 1.0),
    }
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=make_sampler(tiny_config().study))
    rng = np.random.default_rng(0)
    for i in range(12):
        fresh = i % 3 != 0
        params = {"widths": ["16", "32-16"][i % 2], "beta": float(10 ** rng.uniform(-7, -3.6))}
        params |= {"ramp_start": float(rng.uniform())} if fresh else {}
        dists = {k: space[k] for k in params}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, values=[rng.uniform(), i]))
    study.add_trial(optuna.trial.create_trial(values=[0.5, 3.0]))  # imported: no parameters
    study.ask()
    modelled = study.sampler.infer_relative_search_space(study, study.get_trials()[-1])
    assert {"beta", "ramp_start", "widths"} <= set(modelled)


@pytest.mark.parametrize("sampler", ["OnePerTraining", "TPESampler"])
def test_tpe_counts_a_trainings_harvested_epochs_once(sampler):
    """Two trainings on the front, one with eight harvested epochs beside it (the same parameters): TPE's
    good density weighs the two trainings alike, instead of nine to one."""
    import optuna
    from optuna.distributions import CategoricalDistribution

    from hqsearch.study.storage import OnePerTraining

    dist = {"widths": CategoricalDistribution(["a", "b", "c"])}
    cls = OnePerTraining if sampler == "OnePerTraining" else optuna.samplers.TPESampler
    tpe = cls(seed=0, n_startup_trials=0, gamma=lambda n: 10, n_ei_candidates=1)  # the good split: the front
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=tpe)

    def point(widths: str, acc: float, luts: float) -> None:
        study.add_trial(optuna.trial.create_trial(params={"widths": widths}, distributions=dist, values=[acc, luts]))

    point("a", 0.95, 1000)
    for i in range(8):  # its harvested epochs: a front of their own
        point("a", 0.94 - 0.01 * i, 900 - 100 * i)
    point("b", 0.97, 5000)
    for i in range(10):
        point("c", 0.5, 10000 + i)
    chosen = [study.ask(dist).params["widths"] for _ in range(200)]
    share_b = chosen.count("b") / len(chosen)
    if sampler == "OnePerTraining":
        assert share_b > 0.3
    else:  # what the parameters' copies do to plain TPE
        assert share_b < 0.2
