"""The driver's ledger against what Optuna and hqsearch compute from the whole study, on a real storage
whose trials start, finish and fail between refreshes (some by a peer)."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from conftest import tiny_raw
from optuna.trial import TrialState

from hqsearch.config.schema import parse_config
from hqsearch.search.continuation import Starts, choose, gains
from hqsearch.search.fidelity import gate
from hqsearch.search.front import constraint_values, measured_front
from hqsearch.search.ledger import Ledger
from hqsearch.study.points import trainings_done
from hqsearch.study.storage import open_study, set_user_attrs


def config(tmp_path, storage: str | None = None, reference: dict | None = None):
    study = {"objectives": {"accuracy": "max", "luts": "min", "latency_cycles": "min"}, "constraints": ["luts <= 5000"]}
    if storage:
        study["storage"] = storage
    return parse_config(
        tiny_raw(
            tmp_path,
            "ledger",
            study=study,
            synthesis={"backend": "yosys", "fidelity": "front"},
            training={"continuation": {"share": 1.0, "startup": 2}},
            report={"hypervolume": {"reference": reference or {}}},
        )
    )


def tell(cfg, study: optuna.Study, trial: optuna.Trial, rng: np.random.Generator, **attrs) -> None:
    luts = float(rng.lognormal(7, 1))
    metrics = {"accuracy": float(rng.uniform(0.5, 1)), "luts": luts, "latency_cycles": float(rng.integers(1, 5))}
    estimate = {"luts": luts * float(rng.lognormal(0, 0.1))}
    info = {"epochs": int(rng.integers(1, 30)), "estimate": estimate, "synth_skipped": attrs.pop("skipped", None)}
    set_user_attrs(trial, {"metrics": metrics, "info": info, "model_artifact": f"m{trial.number}", **attrs})
    for key, value in constraint_values(cfg.study, metrics, info).items():  # as the driver tells it
        trial.set_constraint(key, value)
    study.tell(trial, [metrics["accuracy"], luts, metrics["latency_cycles"]])


@pytest.mark.parametrize("reference", [None, {"accuracy": 0.6, "luts": 20000}])
def test_the_ledger_keeps_what_the_whole_study_says(tmp_path, reference):
    cfg = config(tmp_path, reference=reference)
    study, peer = open_study(cfg), open_study(cfg)
    ledger, rng = Ledger(cfg), np.random.default_rng(0)
    running: list[optuna.Trial] = []
    for step in range(60):
        for _ in range(int(rng.integers(0, 4))):
            running.append((peer if step % 3 else study).ask())
            running[-1].set_user_attr("origin", "training")
        for trial in [running.pop(int(rng.integers(len(running)))) for _ in range(min(len(running), 2))]:
            if rng.random() < 0.2:
                study.tell(trial, state=TrialState.FAIL)
            else:
                continues = int(rng.integers(trial.number)) if trial.number and rng.random() < 0.5 else None
                tell(cfg, study, trial, rng, skipped="deferred" if rng.random() < 0.2 else None, continues=continues)
        trials = study.get_trials(deepcopy=False)
        ledger.refresh(trials)

        assert (ledger.trainings, ledger.epochs) == trainings_done(study)
        measured = [t.number for t in measured_front(trials, [True, False, False])]
        assert sorted(ledger.front.items) == measured == [t.number for t in study.best_trials]
        assert sorted(t.number for t in ledger.running()) == sorted(t.number for t in running)
        whole = gate(cfg, trials)
        assert ledger.gate.measured == whole.measured
        assert sorted(ledger.gate.pairs.get("luts", [])) == sorted(whole.pairs.get("luts", []))
        assert sorted(ledger.gate.front) == sorted(whole.front)
        skipped = [t.number for t in trials if t.state == TrialState.COMPLETE and t.user_attrs["info"]["synth_skipped"]]
        assert sorted(ledger.skipped) == skipped
        # the search builds on designs told with their estimate too
        feasible = [t for t in trials if t.state == TrialState.COMPLETE and t.user_attrs["metrics"]["luts"] <= 5000]
        assert ledger.starts.gains() == pytest.approx(gains(feasible, cfg))
        seed = np.random.default_rng(step), np.random.default_rng(step)
        assert ledger.starts.choose(ledger.unfinished, seed[0]) == choose(trials, cfg, seed[1])
    assert ledger.trainings > 20 and len(ledger.front) > 1 and ledger.starts.gains()


def test_a_start_pool_scores_only_its_front_yet_like_gains_over_every_point(tmp_path):
    cfg = config(tmp_path)
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    rng = np.random.default_rng(1)
    for _ in range(300):
        metrics = {"accuracy": rng.uniform(0.5, 1), "luts": rng.lognormal(7, 1), "latency_cycles": rng.integers(1, 5)}
        attrs = {"metrics": metrics, "model_artifact": "m", "origin": "harvest"}
        values = [metrics[m] for m in ("accuracy", "luts", "latency_cycles")]
        study.add_trial(optuna.trial.create_trial(values=values, user_attrs=attrs))
    starts = Starts(cfg)
    for t in study.trials:
        starts.add(t)
    assert len(starts.front) < 60  # most points are dominated, and never looked at again
    assert starts.gains() == pytest.approx(gains(study.trials, cfg))


def test_attributes_in_one_transaction_and_refused_once_the_trial_is_told(tmp_path, postgres_url):
    for storage in (None, postgres_url):
        study = open_study(config(tmp_path / ("pg" if storage else "sqlite"), storage))
        trial = study.ask()
        set_user_attrs(trial, {"a": 1, "b": {"c": [1, 2]}})
        set_user_attrs(trial, {"a": 2})
        assert study.trials[-1].user_attrs == {"a": 2, "b": {"c": [1, 2]}}
        study.tell(trial, state=TrialState.FAIL)
        with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):  # what tells the driver a peer claimed it
            set_user_attrs(trial, {"a": 3})


@pytest.mark.parametrize("limit", [{"n_trials": 150}, {"n_trials": None, "budget": 2000}])
def test_the_driver_keeps_count_over_hundreds_of_instant_trials(tmp_path, limit):
    """The real driver and storage, with trials that take no time: what the ledger told the loop (budget,
    front, continuations) agrees with the whole study at the end, and the budget is never overshot."""
    from instant_executor import InstantExecutor

    from hqsearch.driver import Driver

    raw = tiny_raw(tmp_path, "instant", study=limit, training={"epochs": 20}, execution={"max_concurrent": 8})
    raw["synthesis"] = {"backend": "yosys"}
    raw["search_space"]["epochs"] = {"low": 5, "high": 30}
    raw["training"]["continuation"] = {"share": 0.75, "startup": 4}
    cfg = parse_config(raw)
    seen = []
    driver = Driver(cfg, on_progress=lambda p: seen.append((p.complete, p.front)), executor=InstantExecutor())
    summary = driver.run()
    study = optuna.load_study(study_name="instant", storage=cfg.study.storage_url)
    complete, epochs = trainings_done(study)
    assert (summary.complete, summary.epochs) == (complete, epochs)
    if limit["n_trials"]:
        assert complete == 150 and len(study.trials) == 150
    else:
        assert 2000 <= epochs < 2000 + 30  # stops once the budget is spent, the last training cut to fit
        assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert seen[-1] == (complete, len(study.best_trials))
    assert [c for c, _ in seen] == sorted(c for c, _ in seen)
    # a share of 0.75 asks for continuations, but a front point gets two tries and none at the top of beta
    assert sum("continues" in t.user_attrs for t in study.trials) > complete / 3
