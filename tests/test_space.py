import optuna

from hqsearch.config.schema import parse_config
from hqsearch.search.continuation import Starts
from hqsearch.search.space import opening_ramp, suggest
from hqsearch.study.attrs import ORIGIN_ATTR
from hqsearch.study.points import Origin


def sample(raw_space: dict, synthesis: dict | None = None, n: int = 30):
    cfg = parse_config({"study": {"name": "s"}, "search_space": raw_space, "synthesis": synthesis or {}})
    study = optuna.create_study(directions=["maximize"], sampler=optuna.samplers.RandomSampler(seed=1))
    out = []
    for _ in range(n):
        t = study.ask()
        out.append((suggest(t, cfg), t.params))
        study.tell(t, 0.0)
    return out


def test_allow_zero_adds_an_off_switch_next_to_a_log_range():
    draws = sample({"beta": {"low": 1e-6, "high": 1e-4, "log": True, "allow_zero": True}})
    betas = [p.beta for p, _ in draws]
    assert 0.0 in betas and any(1e-6 <= b <= 1e-4 for b in betas)
    for p, raw in draws:
        assert ("beta" in raw) == raw["beta_on"] == (p.beta > 0)


def test_inter_layer_with_resource_strategy_fixes_beta_to_zero():
    space = {"heterogeneity": {"weights": ["intra", "inter"], "activations": ["inter"]}}
    for p, raw in sample(space, {"strategy": "resource"}):
        if p.weights == "inter":
            assert p.beta == 0 and "beta" not in raw and p.notes
        else:
            assert p.beta > 0
    for p, _ in sample({**space, "zero_beta_for_inter_resource": False}, {"strategy": "resource"}):
        assert p.beta > 0


def test_fixed_values_and_width_choices():
    draws = sample({"beta": 0, "l2": 1e-5, "widths": [[8], [16, 8]], "init_weight_bits": {"low": 3, "high": 6}})
    assert {p.widths for p, _ in draws} == {(8,), (16, 8)}
    assert all(p.beta == 0 and p.l2 == 1e-5 and 3 <= p.init_weight_bits <= 6 for p, _ in draws)


def test_a_length_the_budget_cuts_is_the_trials_parameter():
    """What the epoch budget has left bounds the sampled length: the trial's `epochs` is what runs, within
    the range where the budget allows and exactly what is left below it; the sampler's range stays whole."""
    cfg = parse_config({"study": {"name": "s"}, "search_space": {"epochs": {"low": 20, "high": 80}}})
    study = optuna.create_study(directions=["maximize"], sampler=optuna.samplers.TPESampler(seed=1, multivariate=True))
    for left, lowest, highest in ((None, 20, 80), (50, 20, 50), (7, 7, 7)):
        for _ in range(12):
            t = study.ask()
            p = suggest(t, cfg, max_epochs=left)
            assert t.params["epochs"] == p.epochs and lowest <= p.epochs <= highest
            assert (left is not None) == any("what the epoch budget had left" in n for n in p.notes)
            study.tell(t, float(p.epochs))


def test_the_opening_trainings_are_the_authors_ramp():
    """The study's first `ramp.opening` trainings ramp from `beta.low` (held 1/16 of the epochs) to
    `beta.high` at the longest length searched; the sampler chooses the network and the rest."""
    space = {
        "beta": {"low": 1e-7, "high": 1e-3, "log": True, "allow_zero": True},
        "epochs": {"low": 16, "high": 48},
        "ramp": {"start": {"low": 0.0, "high": 1.0}, "hold": {"low": 0.0, "high": 0.25}, "opening": 2},
        "widths": [[8], [32, 16], [16, 8]],
        "l1": {"low": 1e-8, "high": 1e-5, "log": True},
    }
    cfg = parse_config({"study": {"name": "s"}, "search_space": space})
    study = optuna.create_study(directions=["maximize"], sampler=optuna.samplers.RandomSampler(seed=1))
    starts, opened = Starts(cfg), []
    while starts.opens(study.get_trials(states=(optuna.trial.TrialState.RUNNING,))):
        study.enqueue_trial(opening_ramp(cfg))
        t = study.ask()
        t.set_user_attr(ORIGIN_ATTR, Origin.TRAINING.value)
        opened.append((suggest(t, cfg), t.params))
    assert len(opened) == 2
    for p, raw in opened:
        assert (p.beta, p.beta_start, p.epochs, p.hold) == (1e-3, 1e-7, 48, 3)
        assert 1e-8 <= p.l1 <= 1e-5 and raw["beta_on"] and "widths" in raw
    pid = cfg.training.model_copy(update={"beta_schedule": "pid"})
    assert opening_ramp(cfg.model_copy(update={"training": pid})) == {}  # no ramp: nothing to open with


HLS_SPACE = {
    "heterogeneity": {"weights": ["intra", "per_channel", "inter"], "activations": ["intra", "inter"]},
    "hls4ml": {
        "strategy": ["latency", "resource", "distributed_arithmetic"],
        "reuse_factor": [1, 2, 4],
        "io_type": ["io_parallel", "io_stream"],
    },
}


def test_hls4ml_settings_are_searched_within_hgqs_rules():
    draws = sample(HLS_SPACE, {"backend": "vitis"}, n=80)
    seen = set()
    for p, raw in draws:
        inter_only = p.weights == "inter" and p.activations == "inter"
        seen.add((p.strategy, p.reuse_factor, p.io_type))
        # rule 5: the resource strategy for inter-layer-only heterogeneity, and beta 0 with it; nothing else
        assert (p.strategy == "resource") == inter_only
        assert (p.beta == 0) == inter_only and ("beta" in raw) == (not inter_only)
        if p.weights == "intra":
            assert p.strategy in ("latency", "distributed_arithmetic")  # rule 4
        if p.strategy == "distributed_arithmetic":
            assert p.reuse_factor == 1 and "reuse_factor" not in raw  # fully parallel in hls4ml
        if p.activations == "intra":
            assert p.io_type == "io_parallel" and "io_type" not in raw  # hls4ml streams one bitwidth per tensor
        assert p.hls4ml == {"strategy": p.strategy, "reuse_factor": p.reuse_factor, "io_type": p.io_type}
        assert p.to_dict()["strategy"] == p.strategy
    assert {s for s, _, _ in seen} == {"latency", "resource", "distributed_arithmetic"}
    assert {r for _, r, _ in seen} == {1, 2, 4} and {io for _, _, io in seen} == {"io_parallel", "io_stream"}


def test_without_hls4ml_choices_a_trial_keeps_the_synthesis_settings():
    for p, raw in sample({}, {"backend": "vivado", "strategy": "latency"}, n=3):
        assert p.hls4ml == {} and p.strategy is None and not {"strategy", "reuse_factor", "io_type"} & set(raw)


def test_a_trial_builds_and_measures_with_the_settings_it_chose():
    from hqsearch.search.space import TrialParams

    cfg = parse_config({"study": {"name": "s"}, "synthesis": {"backend": "vitis"}, "search_space": HLS_SPACE})
    p = TrialParams(1e-5, 0, 0, "inter", "inter", 1e-3, (8,), strategy="resource", reuse_factor=4, io_type="io_stream")
    syn = cfg.with_synthesis(**p.hls4ml).synthesis
    assert (syn.strategy, syn.reuse_factor, syn.io_type, syn.backend) == ("resource", 4, "io_stream", "vitis")
    assert cfg.synthesis.strategy == "latency"  # the study's own section is unchanged
