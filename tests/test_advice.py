from hqsearch.config.schema import parse_config
from hqsearch.pipeline.advice import advise


def cfg(**sections):
    raw = {"study": {"name": "a"}}
    raw.update(sections)
    return parse_config(raw)


def rules(c) -> list[tuple[str, int]]:
    return [(a.level, a.rule) for a in advise(c)]


def test_inter_layer_with_beta_and_latency_strategy_warns():
    c = cfg(search_space={"heterogeneity": {"weights": ["inter"], "activations": ["inter"]}})
    texts = [str(a) for a in advise(c)]
    assert ("warning", 5) in rules(c)
    assert any("beta = 0" in t for t in texts)
    assert any("recommended only for the resource strategy" in t for t in texts)
    assert any("intra-layer heterogeneous weights are recommended" in t for t in texts)


def test_inter_layer_with_resource_strategy_and_zero_beta_rule_is_quiet_about_beta():
    c = cfg(
        search_space={"heterogeneity": {"weights": ["inter"], "activations": ["inter"]}},
        synthesis={"strategy": "resource"},
    )
    assert not any("beta = 0" in str(a) for a in advise(c))
    c = cfg(
        search_space={
            "heterogeneity": {"weights": ["inter"], "activations": ["inter"]},
            "zero_beta_for_inter_resource": False,
        },
        synthesis={"strategy": "resource"},
    )
    assert any("beta = 0" in str(a) for a in advise(c))


def test_ebops_objective_outside_latency_parallel_rf1_warns():
    for synthesis in ({"io_type": "io_stream"}, {"strategy": "resource"}, {"reuse_factor": 4}):
        c = cfg(study={"name": "a", "objectives": {"accuracy": "max", "ebops": "min"}}, synthesis=synthesis)
        assert ("warning", 1) in rules(c), synthesis
    c = cfg(study={"name": "a", "objectives": {"accuracy": "max", "ebops": "min"}})
    assert ("warning", 1) not in rules(c)


def test_default_config_gets_only_the_activation_tip():
    assert rules(cfg()) == [("tip", 4)]


def test_pragma_tips_apply_to_hls_backends_only():
    assert ("tip", 3) in rules(cfg(synthesis={"backend": "vivado"}))
    assert ("tip", 2) not in rules(cfg(synthesis={"backend": "vivado"}))
    assert ("tip", 2) in rules(cfg(synthesis={"backend": "vitis"}, model={"kind": "conv"}))
    assert ("tip", 3) not in rules(cfg(synthesis={"backend": "yosys"}))


def test_io_stream_with_intra_activations_on_hls_warns():
    c = cfg(synthesis={"backend": "vitis", "io_type": "io_stream"})
    assert any("only with io_parallel" in str(a) for a in advise(c))


def test_ebops_objective_with_searched_hls4ml_settings_names_what_a_trial_can_take():
    het = {"weights": ["intra", "inter"], "activations": ["inter"]}
    objectives = {"accuracy": "max", "ebops": "min"}
    c = cfg(
        study={"name": "a", "objectives": objectives},
        synthesis={"backend": "vitis"},
        search_space={"heterogeneity": het, "hls4ml": {"strategy": ["latency", "resource"], "reuse_factor": [1, 2]}},
    )
    (ebops,) = [str(a) for a in advise(c) if a.rule == 1]
    assert "strategy can be 'resource'" in ebops and "reuse_factor can be 2" in ebops and "io_stream" not in ebops
    assert not any(a.rule == 5 for a in advise(c))  # the space itself gives inter-only trials resource and beta 0
    latency_only = {
        "heterogeneity": het,
        "hls4ml": {"strategy": "latency", "reuse_factor": 1, "io_type": "io_parallel"},
    }
    c = cfg(study={"name": "a", "objectives": objectives}, synthesis={"backend": "vitis"}, search_space=latency_only)
    assert ("warning", 1) not in rules(c)
