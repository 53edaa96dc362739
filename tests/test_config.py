import re
from pathlib import Path

import pytest
import yaml

from hqsearch.cli import main
from hqsearch.config.schema import ConfigError, load_config, parse_config

GOOD = """\
study:
  name: ok
  n_trials: 3
  objectives: {accuracy: max, luts: min}
  constraints: ["luts <= 20000", "accuracy >= 0.5"]
search_space:
  beta: {low: 1.0e-7, high: 1.0e-4, log: true, allow_zero: true}
  l1: 1.0e-6
  heterogeneity: {weights: [intra, inter, per_channel], activations: inter}
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "study.yaml"
    p.write_text(text)
    return p


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    return str(err.value)


def test_good_config_parses_with_defaults(tmp_path):
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.study.directions == ["maximize", "minimize"]
    assert cfg.study.storage_url == "sqlite:///runs/ok/study.db"
    assert [c.key for c in cfg.study.constraints] == ["luts<=20000", "accuracy>=0.5"]
    assert cfg.study.constraints[0].value({"luts": 25000}) == 5000  # infeasible: > 0
    assert cfg.study.constraints[1].value({"accuracy": 0.9}) == pytest.approx(-0.4)
    assert cfg.search_space.heterogeneity.activations == ["inter"]
    assert cfg.synthesis.backend == "estimate"


def test_overrides_replace_study_fields_only_when_given(tmp_path):
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.with_overrides(n_trials=None, storage=None) is cfg
    other = cfg.with_overrides(n_trials=50, storage="sqlite:///x.db")
    assert (other.study.n_trials, other.study.storage_url) == (50, "sqlite:///x.db")
    assert cfg.study.n_trials == 3


def test_unknown_key_names_key_file_and_line(tmp_path):
    msg = error_of(tmp_path, GOOD + "training:\n  epoch: 3\n")
    assert msg == f"{tmp_path / 'study.yaml'}:11: training.epoch: unknown key"


def test_wrong_type_is_named(tmp_path):
    msg = error_of(tmp_path, GOOD.replace("n_trials: 3", "n_trials: many"))
    assert "study.yaml:3: study.n_trials:" in msg and "integer" in msg


def test_impossible_range_is_named(tmp_path):
    msg = error_of(tmp_path, GOOD.replace("low: 1.0e-7, high: 1.0e-4", "low: 1.0e-3, high: 1.0e-5"))
    assert "search_space.beta: low (0.001) must not exceed high (1e-05)" in msg
    assert "valid number" not in msg  # the float branch of `float | range` is not reported


def test_log_range_needs_positive_low(tmp_path):
    msg = error_of(tmp_path, GOOD.replace("low: 1.0e-7", "low: 0"))
    assert "a log range needs low > 0" in msg


def test_unknown_objective_and_bad_direction(tmp_path):
    msg = error_of(tmp_path, GOOD.replace("luts: min}", "lutz: min}"))
    assert "study.objectives.lutz" in msg
    msg = error_of(tmp_path, GOOD.replace("luts: min}", "luts: smaller}"))
    assert "direction of 'luts' must be max or min" in msg


def test_bad_constraint_and_heterogeneity(tmp_path):
    msg = error_of(tmp_path, GOOD.replace('"luts <= 20000"', '"luts < 20000"'))
    assert "constraint 'luts < 20000' must look like" in msg
    msg = error_of(tmp_path, GOOD.replace("per_channel]", "per_layer]"))
    assert "search_space.heterogeneity.weights.2" in msg


def test_source_specific_requirements(tmp_path):
    msg = error_of(tmp_path, GOOD + "data:\n  source: csv\n  path: x.csv\n")
    assert "source 'csv' needs 'label'" in msg
    msg = error_of(tmp_path, GOOD + "training:\n  beta_schedule: pid\n")
    assert "needs 'target_ebops'" in msg


def test_not_yaml_and_missing_file(tmp_path):
    assert "not valid YAML" in error_of(tmp_path, "study: [unclosed\n")
    with pytest.raises(ConfigError, match="cannot read the study config"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="expected a mapping"):
        parse_config(["a"], "x.yaml")
    (tmp_path / "study.db").write_bytes(b"SQLite format 3\x00\xfb\xff")  # a storage given where a config goes
    with pytest.raises(ConfigError, match="study.db: not a YAML study config.*--storage URL --study NAME"):
        load_config(tmp_path / "study.db")


MERGED = """\
study: {name: merged}
execution:
  ray:
    train: &stage {num_cpus: 2, resources: {vivado: 1}}
    synth:
      <<: *stage
      num_cpus: 1
search_space:
  l1: &range {low: 1.0e-7, high: 1.0e-5}
  l2:
    <<: [{log: true}, *range]
    high: 1.0e-4
"""


def test_yaml_merge_keys_merge_as_in_yaml_1_1(tmp_path):
    cfg = load_config(write(tmp_path, MERGED))
    assert cfg.execution.ray.train.num_cpus == 2 and cfg.execution.ray.train.resources == {"vivado": 1}
    assert cfg.execution.ray.synth.num_cpus == 1 and cfg.execution.ray.synth.resources == {"vivado": 1}  # own key wins
    assert (cfg.search_space.l2.low, cfg.search_space.l2.high, cfg.search_space.l2.log) == (1e-7, 1e-4, True)
    assert (cfg.search_space.l1.high, cfg.search_space.l1.log) == (1e-5, False)  # the anchor itself is unchanged
    # an error in a merged key points at the line where its value is written
    bad = MERGED.replace("resources: {vivado: 1}", "resources: {vivado: 1}, num_gpu: 1")
    assert error_of(tmp_path, bad).endswith(":4: execution.ray.synth.num_gpu: unknown key")


def test_ramp_epochs_and_budget(tmp_path):
    base = "study:\n  name: ok\n"
    cfg = load_config(write(tmp_path, base))
    assert (cfg.study.n_trials, cfg.study.budget) == (20, None)  # neither given: 20 trainings
    cfg = load_config(write(tmp_path, base + "  budget: 300\n"))
    assert (cfg.study.n_trials, cfg.study.budget) == (None, 300)  # the budget alone ends the study
    msg = error_of(tmp_path, base + "search_space:\n  ramp:\n    hold: {low: 0.0, high: 1.5}\n")
    assert "search_space.ramp.hold" in msg and "within [0, 1]" in msg
    assert "search_space.epochs" in error_of(tmp_path, base + "search_space:\n  epochs: {low: 0, high: 5}\n")
    assert "training.continuation.share" in error_of(tmp_path, base + "training:\n  continuation: {share: 2}\n")


def test_a_search_left_unset_gets_the_benchmarks_shape(tmp_path):
    base = "study:\n  name: ok\n"
    space = load_config(write(tmp_path, base)).search_space
    assert (space.epochs.low, space.epochs.high) == (20, 80)  # around training.epochs (40)
    assert (space.ramp.start.low, space.ramp.start.high, space.ramp.hold.high) == (0, 1, 0.25)
    space = load_config(write(tmp_path, base + "training:\n  epochs: 7\n")).search_space
    assert (space.epochs.low, space.epochs.high) == (3, 14)
    cfg = load_config(write(tmp_path, base + "training:\n  epochs: 7\nsearch_space:\n  epochs: null\n"))
    assert cfg.search_space.epochs is None  # fixed at training.epochs
    assert "training.epochs" in error_of(tmp_path, base + "training:\n  epochs: many\n")  # still its own error


def test_cli_check_prints_one_message_and_no_traceback(tmp_path, capsys):
    path = write(tmp_path, GOOD.replace("n_trials: 3", "n_trials: -1"))
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert "study.n_trials" in err and "Traceback" not in err


def test_default_objectives_are_normalised_like_given_ones():
    cfg = parse_config({"study": {"name": "minimal", "n_trials": 1}})
    assert cfg.study.objectives == {"accuracy": "maximize", "luts": "minimize"}
    assert cfg.study.directions == ["maximize", "minimize"]


def test_a_metric_the_backend_does_not_produce_is_refused_at_its_line(tmp_path):
    text = "study:\n  name: x\n  objectives:\n    accuracy: max\n    brams: min\n"
    assert error_of(tmp_path, text) == (
        f"{tmp_path / 'study.yaml'}:5: study.objectives.brams: backend 'estimate' does not produce 'brams' "
        "(produced by: vivado, vitis, vivado-rtl)"
    )
    text = "study:\n  name: x\n  constraints: ['ii <= 1']\nsynthesis:\n  backend: yosys\n"
    assert error_of(tmp_path, text) == (
        f"{tmp_path / 'study.yaml'}:3: study.constraints.0: backend 'yosys' does not produce 'ii' "
        "(produced by: vivado, vitis)"
    )
    ok = "study:\n  name: x\n  objectives: {accuracy: max, brams: min, ii: min}\nsynthesis:\n  backend: vitis\n"
    assert load_config(write(tmp_path, ok)).study.metric_names == ["accuracy", "brams", "ii"]


def test_test_split_metrics_cannot_choose(tmp_path):
    msg = error_of(tmp_path, "study:\n  name: x\n  objectives: {test_accuracy: max}\n")
    assert (
        "study.objectives.test_accuracy: 'test_accuracy' is measured on the test split" in msg
        and "use 'accuracy'" in msg
    )
    msg = error_of(tmp_path, "study:\n  name: x\n  constraints: ['test_accuracy >= 0.9']\n")
    assert "study.constraints.0.metric" in msg and "never used to choose" in msg


def test_validation_split_is_required(tmp_path):
    msg = error_of(tmp_path, "study:\n  name: x\ndata:\n  val_fraction: 0\n")
    assert msg.startswith(f"{tmp_path / 'study.yaml'}:4: data.val_fraction: must be more than 0")
    assert "chosen on the validation split" in msg


def test_gp_sampler_needs_pytorch(tmp_path):
    import importlib.util

    text = "study:\n  name: x\n  sampler: gp\n"
    if importlib.util.find_spec("torch") is None:
        assert "sampler 'gp' is Optuna's GPSampler, which needs PyTorch" in error_of(tmp_path, text)
    else:
        assert load_config(write(tmp_path, text)).study.sampler == "gp"


def _hls_config(search: dict, synthesis: dict | None = None, heterogeneity: dict | None = None) -> str:
    het = heterogeneity or {"weights": ["intra", "inter"], "activations": ["inter"]}
    return yaml.safe_dump(
        {
            "study": {"name": "x"},
            "search_space": {"heterogeneity": het, "hls4ml": search},
            "synthesis": {"backend": "vitis", **(synthesis or {})},
        }
    )


@pytest.mark.parametrize(
    ("search", "synthesis", "heterogeneity", "message"),
    [
        ({"strategy": ["latency", "resource"]}, {"backend": "yosys"}, None, "searched only for the backends vivado"),
        ({"strategy": ["latency", "distributed_arithmetic"]}, None, None, "goes with the resource strategy"),
        (
            {"strategy": ["latency", "resource"]},
            None,
            {"weights": ["intra"], "activations": ["intra", "inter"]},
            "resource is the strategy of inter-layer-only",
        ),
        (
            {"strategy": ["latency", "resource"]},
            None,
            {"weights": ["inter"], "activations": ["inter"]},
            "the other choices are never used",
        ),
        (
            {"strategy": "distributed_arithmetic", "reuse_factor": [1, 2]},
            None,
            None,
            "distributed_arithmetic runs at reuse factor 1",
        ),
        (
            {"io_type": ["io_parallel", "io_stream"]},
            None,
            {"weights": ["intra"], "activations": ["intra"]},
            "io_type: hls4ml streams (io_stream) only inter-layer activations",
        ),
        ({"io_type": ["io_serial"]}, None, None, "hls4ml.io_type.0: Input should be"),
        ({"reuse_factor": [0]}, None, None, "hls4ml.reuse_factor.0: Input should be greater than or equal to 1"),
    ],
)
def test_hls4ml_search_space_errors_name_the_key(tmp_path, search, synthesis, heterogeneity, message):
    path = tmp_path / "s.yaml"
    path.write_text(_hls_config(search, synthesis, heterogeneity))
    with pytest.raises(ConfigError, match=re.escape(message)) as err:
        load_config(path)
    assert f"{path}:" in str(err.value)


def test_hls4ml_search_space_within_the_rules_loads(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(_hls_config({"strategy": ["latency", "resource"], "reuse_factor": 4, "io_type": "io_parallel"}))
    cfg = load_config(path)
    assert cfg.search_space.hls4ml.strategy == ["latency", "resource"] and cfg.search_space.hls4ml.reuse_factor == [4]
    assert cfg.search_space.hls4ml.searched == ["strategy"]
