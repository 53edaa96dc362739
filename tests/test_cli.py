"""The installed `hqsearch` command, as a user runs it: in a process of its own where the test is about its
process (exit codes, Ctrl-C, what reaches the terminal), in this one where it is about what it says."""

import contextlib
import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import yaml
from conftest import share_compile_cache, tiny_raw
from helpers import free_port

from hqsearch.config.schema import load_config
from hqsearch.study.storage import open_study

ROOT = Path(__file__).parents[1]


def test_run_with_overrides_then_report(tmp_path, hq_here):
    config = tmp_path / "tiny.yaml"
    raw = tiny_raw(tmp_path / "out", "clitiny")
    del raw["study"]["output_dir"]  # default paths: runs/<name>/ under the working directory
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    storage = f"sqlite:///{tmp_path / 'elsewhere.db'}"

    # the epoch budget ends it first: one training of 3 epochs spends it
    res = hq_here("run", str(config), "--n-trials", "5", "--budget", "3", "--storage", storage, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "target 5 COMPLETE trainings or 3 training epochs" in res.stdout
    assert "trainings 1/5  epochs 3/3" in res.stdout and "front 1" in res.stdout
    assert "1 COMPLETE trainings (3 epochs) in study clitiny" in res.stdout
    assert (tmp_path / "elsewhere.db").exists() and not (tmp_path / "runs" / "clitiny" / "study.db").exists()
    assert (tmp_path / "runs" / "clitiny" / "trials" / "00000" / "model.keras").exists()

    res = hq_here("report", str(config), "--storage", storage, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "runs" / "clitiny" / "report" / "pareto.csv").exists()


def test_check_shipped_studies(hq_here):
    for config in sorted((ROOT / "studies").glob("*.yaml")):
        res = hq_here("check", str(config), cwd=ROOT)
        assert res.returncode == 0, res.stdout + res.stderr
        assert res.stdout.startswith("ok ") and res.stderr == ""
        assert "\nsearch: beta " in res.stdout  # the search shape it will use
        if config.name == "digits.yaml":
            assert "continue the point above the front's widest gap" in " ".join(res.stdout.split())
        if config.name == "jet_tagging.yaml" and not (ROOT / "data" / "jet_hlf.parquet").exists():
            # its data is a local copy the user downloads: a valid config, with the file found missing here
            warning = f"warning: {config}:17: data.path: data file data/jet_hlf.parquet does not exist here"
            assert warning in res.stdout and "run refuses to start" in res.stdout
        else:
            assert "model builds" in res.stdout


def test_bad_config_is_one_message(tmp_path, hq_here):
    config = tmp_path / "bad.yaml"
    config.write_text("study:\n  name: x\n  samplr: tpe\n")
    res = hq_here("run", str(config), cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr.strip() == f"error: {config}:3: study.samplr: unknown key"


def test_every_documented_default_runs(tmp_path, hq_here):
    """The minimal config of the docs: only a name and one trial, every other key at its default."""
    config = tmp_path / "minimal.yaml"
    config.write_text("study: {name: minimal, n_trials: 1}\n")
    share_compile_cache(tmp_path)
    res = hq_here("run", str(config), "--no-progress", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    ran = re.search(r"1 COMPLETE trainings \((\d+) epochs\) in study minimal", res.stdout)
    assert ran and 20 <= int(ran[1]) <= 80, res.stdout  # a length from the default search, around 40
    res = hq_here("report", str(config), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    front = (tmp_path / "runs" / "minimal" / "report" / "pareto.csv").read_text().splitlines()
    header = front[0].split(",")
    assert {"accuracy", "test_accuracy", "luts", "origin"} <= set(header) and len(front) >= 2
    assert "hypervolume" in res.stdout and (tmp_path / "runs" / "minimal" / "report" / "hypervolume.png").exists()


def test_unreachable_postgresql_is_one_line(tmp_path, hq_here):
    port = free_port()  # nothing listens on it
    config = tmp_path / "pg.yaml"
    config.write_text("study: {name: pg, n_trials: 1}\n")
    url = f"postgresql+psycopg2://hq:secret@127.0.0.1:{port}/studies"
    for args in (
        ("run", str(config), "--storage", url),
        ("status", "--storage", url, "--study", "pg"),
        ("dashboard", str(config), "--storage", url),
    ):
        res = hq_here(*args, cwd=tmp_path)
        assert res.returncode == 2
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in res.stderr
        assert lines[0].startswith(f"error: storage postgresql+psycopg2://hq:***@127.0.0.1:{port}/studies: cannot open")
        assert "Connection refused" in lines[0] and "secret" not in lines[0]
    assert not (tmp_path / "runs").exists()


def test_synth_of_a_model_without_hgq2_layers_is_one_line(tmp_path, hq_here):
    import keras
    from hgq.layers import QDense

    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)], name="plain")
    plain.save(tmp_path / "plain.keras")
    mixed = keras.Sequential([keras.Input((4,)), QDense(3), keras.layers.Activation("softmax", name="soft")])
    mixed.save(tmp_path / "mixed.keras")

    res = hq_here("synth", "plain.keras", "--backend", "estimate", cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip() == "error: model 'plain' has no HGQ2 quantized layers (hgq.layers.Q*): nothing to trace"
    res = hq_here("synth", "mixed.keras", "--backend", "estimate", cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().startswith("error: layer 'soft' (Activation) cannot be traced")


def existing_study(config: Path) -> tuple[Path, str]:
    """The config's study, created as `run` creates it in the config's folder, with one point in it: its
    file and a digest of it."""
    with contextlib.chdir(config.parent):
        cfg = load_config(config)
        study = open_study(cfg)
        dist = optuna.distributions.FloatDistribution(0, 1)
        study.add_trial(optuna.trial.create_trial(values=[0.9, 100.0], params={"x": 0.5}, distributions={"x": dist}))
        db = Path(cfg.study.storage_url.removeprefix("sqlite:///")).resolve()
    return db, hashlib.sha256(db.read_bytes()).hexdigest()


def assert_untouched(db: Path, digest: str) -> None:
    assert hashlib.sha256(db.read_bytes()).hexdigest() == digest
    (study,) = optuna.get_all_study_summaries(f"sqlite:///{db}")
    assert study.n_trials == 1


def test_run_names_a_feature_column_that_is_not_numeric_before_the_study_is_touched(tmp_path, hq_here):
    rows = "".join(f"{i},{'high' if i == 5 else i / 40},{i % 2}\n" for i in range(40))
    (tmp_path / "data.csv").write_text("a,b,label\n" + rows)
    config = tmp_path / "csv.yaml"
    config.write_text("study: {name: csv, n_trials: 1}\ndata:\n  source: csv\n  path: data.csv\n  label: label\n")
    db, digest = existing_study(config)
    res = hq_here("run", str(config), "--no-progress", cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.strip() == (
        f"error: {config}:4: data.path: data.csv: feature column 'b' is not numeric (e.g. 'high'): "
        "list the numeric columns in data.features, or make this one numbers"
    )
    assert_untouched(db, digest)
    assert not (tmp_path / "runs" / "csv" / "trials").exists()


def test_check_names_a_data_file_that_is_not_an_npz(tmp_path, hq_here):
    (tmp_path / "data.npz").write_text("x,y\n1,0\n")
    config = tmp_path / "npz.yaml"
    config.write_text("study: {name: npz, n_trials: 1}\ndata:\n  source: npz\n  path: data.npz\n")
    res = hq_here("check", str(config), cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.strip() == (
        f"error: {config}:4: data.path: data.npz is not an npz file "
        "(expected arrays saved with numpy.savez or savez_compressed)"
    )


def test_unwritable_folders_are_named_before_the_study_is_touched(tmp_path, hq_here):
    (tmp_path / "a_file").write_text("in the way")
    config = tmp_path / "w.yaml"
    base = f"study:\n  name: w\n  n_trials: 1\n  storage: sqlite:///{tmp_path / 'study.db'}\n"
    config.write_text(base)
    db, digest = existing_study(config)
    cases = {  # /sys takes no new files, not even from root; a file where a folder should be stops anyone
        "  output_dir: a_file/out\n": "5: study.output_dir: cannot write to a_file/out: a_file is a file, not a folder",
        "  artifact_dir: /sys/hqsearch/artifacts\n": "5: study.artifact_dir: cannot write to /sys/hqsearch/artifacts: "
        "/sys cannot be written (",
    }
    for line, expected in cases.items():
        config.write_text(base + line)
        for command in ("check", "run"):
            res = hq_here(command, str(config), cwd=tmp_path)
            assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
            assert len(res.stderr.strip().splitlines()) == 1
            assert res.stderr.startswith(f"error: {config}:{expected}"), res.stderr
    assert_untouched(db, digest)
    assert not (tmp_path / "runs").exists()


def interrupt(proc: subprocess.Popen, ready, timeout: float = 120) -> tuple[str, str]:
    """Ctrl-C at a terminal: SIGINT to the command's whole process group once `ready()`; its output."""
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the command did not get ready"
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)
        return proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # the test failed: nothing of the command is left behind
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()


def hq_started(*args: str, cwd: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "hqsearch.cli", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own group, as a terminal's foreground job
    )


def test_ctrl_c_before_the_trials_is_one_line_and_130(tmp_path):
    """Ctrl-C while `run` checks the data (before the driver takes over Ctrl-C): the study is as it was."""
    config = tmp_path / "held.yaml"
    raw = {"study": {"name": "held", "n_trials": 1}, "data": {"source": "callable"}}
    raw["data"]["function"] = "helpers:digits_held_in_preflight"
    config.write_text(yaml.safe_dump(raw))
    db, digest = existing_study(config)
    marker = tmp_path / "in_preflight"
    env = {**os.environ, "HQ_TEST_MARKER": str(marker)}
    started = time.monotonic()
    proc = hq_started("run", str(config), cwd=tmp_path, env=env)
    _, err = interrupt(proc, marker.exists)
    waited = time.monotonic() - started
    assert proc.returncode == 130 and err == "interrupted\n", err
    assert_untouched(db, digest)
    assert not (tmp_path / "runs" / "held" / "trials").exists()
    assert waited < 60  # the held preflight was ended, not waited for (it would hold Python's exit for 60 s)


def test_ctrl_c_ends_the_dashboard_with_one_line_and_130(tmp_path):
    config = tmp_path / "d.yaml"
    config.write_text("study: {name: d, n_trials: 1}\n")
    existing_study(config)
    port = free_port()

    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    proc = hq_started("dashboard", str(config), "--port", str(port), cwd=tmp_path)
    _, err = interrupt(proc, listening)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == "interrupted" and err.count("interrupted") == 1


def test_dashboard_on_an_artifact_dir_that_cannot_be_made_is_one_line(tmp_path, hq_here):
    (tmp_path / "a_file").write_text("in the way")
    config = tmp_path / "d.yaml"
    config.write_text("study:\n  name: d\n  artifact_dir: a_file/artifacts\n")
    existing_study(config)
    res = hq_here("dashboard", str(config), "--port", "1", cwd=tmp_path)  # refused before it binds
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.strip() == (
        f"error: {config}:3: study.artifact_dir: cannot make the folder a_file/artifacts (Not a directory)"
    )
