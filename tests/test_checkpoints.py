"""`hqsearch import`: existing HGQ2 checkpoints evaluated into a study as points with their source."""

import shutil

import pytest
import yaml
from conftest import tiny_raw

from hqsearch.cli import main
from hqsearch.study.points import Origin, origin
from hqsearch.study.storage import artifact_store, load_existing


@pytest.fixture
def import_config(tmp_path):
    raw = tiny_raw(tmp_path / "out", "imported", study={"objectives": {"accuracy": "max", "luts": "min"}})
    path = tmp_path / "imported.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, raw


def test_import_a_pareto_front_folder_then_skip_what_is_there(tiny_model, import_config, tmp_path, capsys):
    _, model_path, _ = tiny_model
    config, raw = import_config
    folder = tmp_path / "pareto_front"
    folder.mkdir()
    shutil.copy(model_path, folder / "epoch=3_val_accuracy=0.42_ebops=123.keras")  # HGQ2 ParetoFront's names

    assert main(["import", str(config), str(folder)]) == 0
    assert "1 imported into study imported, 0 already there, 0 failed" in capsys.readouterr().out
    study = load_existing(f"sqlite:///{raw['study']['output_dir']}/study.db", "imported")
    (t,) = study.trials
    assert origin(t) is Origin.IMPORT and t.user_attrs["epoch"] == 3
    assert t.user_attrs["source"] == str((folder / "epoch=3_val_accuracy=0.42_ebops=123.keras").resolve())
    assert t.values == [t.user_attrs["metrics"]["accuracy"], t.user_attrs["metrics"]["luts"]]
    assert t.user_attrs["sources"]["accuracy"] == "alkaid bit-exact emulation, validation split"
    assert 0 <= t.user_attrs["metrics"]["test_accuracy"] <= 1 and t.user_attrs["metrics"]["luts"] > 0
    with artifact_store_for(raw).open_reader(t.user_attrs["model_artifact"]) as f:
        assert f.read(2) == b"PK"
    assert [tr.number for tr in study.best_trials] == [0]

    # the same file by content is not imported twice
    assert main(["import", str(config), str(model_path)]) == 0
    assert "already in the study" in capsys.readouterr().out
    assert len(load_existing(f"sqlite:///{raw['study']['output_dir']}/study.db", "imported").trials) == 1


def test_a_file_that_is_no_model_is_one_error_and_adds_nothing(tiny_model, import_config, tmp_path, capsys):
    _, model_path, _ = tiny_model
    config, raw = import_config
    bad = tmp_path / "notes.keras"
    bad.write_text("not a model")
    assert main(["import", str(config), str(model_path), str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: cannot load as a Keras model" in err.replace("\n", "") and "Traceback" not in err
    assert not (tmp_path / "out" / "study.db").exists()  # checked before the study was even opened

    assert main(["import", str(config), str(tmp_path / "missing")]) == 2
    assert "missing: no such file or folder" in capsys.readouterr().err


def artifact_store_for(raw):
    from hqsearch.config.schema import parse_config

    return artifact_store(parse_config(raw))
