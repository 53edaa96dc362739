import optuna

from hqsearch.config import parse_config
from hqsearch.space import suggest


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
