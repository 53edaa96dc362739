"""Every configurable sampler drives a real study; learning_rate as a search dimension reaches training."""

import importlib.util

import pytest
from optuna.trial import TrialState

from hqsearch.driver import run_study
from hqsearch.study import load_existing, make_sampler

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
