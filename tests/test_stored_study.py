"""A study written by an earlier hqsearch (`fixtures/studies/legacy`, from before the subpackage layout) is
read, reported, exported and continued by this one: stored attribute keys and artifacts are an interface."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import share_compile_cache
from optuna.trial import TrialState

from hqsearch.cli import main
from hqsearch.study.storage import load_existing

FIXTURE = Path(__file__).parent / "fixtures" / "studies"
STORAGE = "sqlite:///legacy/study.db"


@pytest.fixture
def legacy(tmp_path, monkeypatch):
    """The fixture study copied into a fresh working directory (its config names `legacy/` relatively)."""
    shutil.copytree(FIXTURE / "legacy", tmp_path / "legacy")
    shutil.copy(FIXTURE / "legacy.yaml", tmp_path)
    share_compile_cache(tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _trials():
    return {t.number: t for t in load_existing(STORAGE, "legacy").get_trials()}


def test_an_earlier_study_is_reported_as_it_was(legacy, capsys):
    assert main(["report", "legacy.yaml"]) == 0
    out = capsys.readouterr().out
    assert "hypervolume 0.2685" in out and "from 6 trainings (60 epochs), 3 harvested candidates" in out
    front = (legacy / "legacy" / "report" / "pareto.csv").read_text().splitlines()
    assert len(front) == 1 + 4  # the four points the report showed when the study was written


def test_a_point_of_an_earlier_study_exports(legacy, capsys):
    assert main(["export", "legacy.yaml", "--trial", "5", "--out", "fw"]) == 0
    assert "alkaid estimates 3,766 LUTs, as recorded" in capsys.readouterr().out
    meta = json.loads((legacy / "fw" / "metrics.json").read_text())
    assert meta["trial"] == 5 and meta["lineage"] == "#5 ← #3"
    assert (legacy / "fw" / "model.keras").is_file() and any((legacy / "fw" / "rtl").iterdir())


def test_an_earlier_study_continues(legacy, capsys):
    before = _trials()
    assert main(["run", "legacy.yaml", "--budget", "70", "--no-progress"]) == 0
    after = _trials()
    for number, t in before.items():  # nothing written before changes
        assert after[number].values == t.values and after[number].user_attrs == t.user_attrs
    new = [t for n, t in after.items() if n not in before and t.user_attrs.get("origin") == "training"]
    assert new and all(t.state == TrialState.COMPLETE for t in new)
    assert sum(t.user_attrs["info"]["epochs"] for t in new) == 10


def test_every_point_of_an_earlier_study_can_be_continued_from_its_stored_checkpoint(legacy, tmp_path):
    from optuna.artifacts import FileSystemArtifactStore, download_artifact

    from hqsearch.firmware.emulate import load_model
    from hqsearch.search.continuation import start_of

    store = FileSystemArtifactStore(str(legacy / "legacy" / "artifacts"))
    starts = [s for t in _trials().values() if (s := start_of(t))]
    assert len(starts) == 9  # 6 trainings, 3 harvested epochs
    for s in starts:
        path = tmp_path / f"start_{s.point}.keras"
        download_artifact(artifact_store=store, file_path=str(path), artifact_id=s.model_artifact)
        assert load_model(path).count_params() > 0 and s.architecture["weights"] in ("intra", "per_channel")
