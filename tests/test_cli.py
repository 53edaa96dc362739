"""The installed `hqsearch` command, as a user runs it."""

import subprocess
import sys
from pathlib import Path

import yaml
from conftest import tiny_raw

ROOT = Path(__file__).parents[1]


def hq(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hqsearch.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_run_with_overrides_then_report(tmp_path):
    config = tmp_path / "tiny.yaml"
    raw = tiny_raw(tmp_path / "out", "clitiny")
    del raw["study"]["output_dir"]  # default paths: runs/<name>/ under the working directory
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    storage = f"sqlite:///{tmp_path / 'elsewhere.db'}"

    res = hq("run", str(config), "--n-trials", "1", "--storage", storage, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "done 1/1" in res.stdout and "front 1" in res.stdout
    assert "1 COMPLETE trials in study clitiny" in res.stdout
    assert (tmp_path / "elsewhere.db").exists() and not (tmp_path / "runs" / "clitiny" / "study.db").exists()
    assert (tmp_path / "runs" / "clitiny" / "trials" / "00000" / "model.keras").exists()

    res = hq("report", str(config), "--storage", storage, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "runs" / "clitiny" / "report" / "pareto.csv").exists()


def test_check_shipped_studies():
    for config in sorted((ROOT / "studies").glob("*.yaml")):
        res = hq("check", str(config), cwd=ROOT)
        assert res.returncode == 0, res.stdout + res.stderr
        assert res.stdout.startswith("ok ")


def test_bad_config_is_one_message(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("study:\n  name: x\n  samplr: tpe\n")
    res = hq("run", str(config), cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr.strip() == f"error: {config}:3: study.samplr: unknown key"
