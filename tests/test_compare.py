"""`hqsearch compare`: studies side by side at one reference point."""

import optuna
import pandas as pd
import pytest
import yaml
from conftest import tiny_raw

from hqsearch.analysis.compare import compare
from hqsearch.analysis.pareto import trials_frame
from hqsearch.cli import main
from hqsearch.search.hypervolume import score
from hqsearch.study.storage import load_existing


@pytest.fixture
def imported_study(tiny_model, tmp_path):
    """A second study, made by importing one checkpoint: cheap, and different from the first."""
    raw = tiny_raw(tmp_path / "other", "other", study={"objectives": {"accuracy": "max", "luts": "min"}})
    config = tmp_path / "other.yaml"
    config.write_text(yaml.safe_dump(raw))
    assert main(["import", str(config), str(tiny_model[1])]) == 0
    return config, f"sqlite:///{tmp_path / 'other' / 'study.db'}"


def test_compare_scores_every_study_at_one_reference(finished_study, imported_study, tmp_path, capsys):
    config, _ = imported_study
    first = f"{finished_study.study.storage_url}#{finished_study.study.name}"
    out = tmp_path / "cmp"
    assert main(["compare", first, str(config), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "hypervolume measured in: accuracy above" in printed and "luts below 1,000,000 in log10" in printed

    table = pd.read_csv(out / "compare.csv")
    assert list(table["study"]) == ["finished", "other"]
    assert list(table["trainings"]) == [3, 0] and list(table["imported"]) == [0, 1]
    assert list(table["epochs"]) == [9, 0]
    assert (out / "compare.png").read_bytes()[:4] == b"\x89PNG"

    # the same numbers as scoring each study alone at the common scale
    result = compare([first, str(config)], tmp_path / "again")
    for name, url in (("finished", finished_study.study.storage_url), ("other", imported_study[1])):
        expected = score(trials_frame(load_existing(url, name)), result.scale)
        row = result.table.set_index("study").loc[name]
        assert row["hypervolume"] == pytest.approx(expected.hypervolume)
        assert row["front"] == expected.front


def test_a_storage_with_several_studies_needs_a_name(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'two.db'}"
    for name in ("a", "b"):
        optuna.create_study(study_name=name, storage=url)
    assert main(["compare", url, "--out", str(tmp_path)]) == 2
    assert "holds 2 studies (a, b): name one as URL#study" in capsys.readouterr().err
    assert main(["compare", "nothing-here", "--out", str(tmp_path)]) == 2
    assert "nothing-here: not a study config (.yaml) nor a storage URL" in capsys.readouterr().err
