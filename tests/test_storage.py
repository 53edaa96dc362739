"""Studies on every storage a cluster uses: a real PostgreSQL server, a journal file, SQLite (orphans claimed
concurrently on them: test_orphans)."""

import pytest
from optuna.trial import TrialState

from hqsearch.driver import run_study
from hqsearch.study import StudyError, load_existing, make_storage


def test_postgresql_backed_study(tiny_config, postgres_url):
    cfg = tiny_config("pg", study={"storage": postgres_url, "n_trials": 2})
    assert run_study(cfg).complete == 2
    study = load_existing(postgres_url, "pg")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    assert study.metric_names == ["accuracy", "luts", "latency_cycles"]
    assert len(study.best_trials) >= 1


def test_journal_file_storage(tiny_config, tmp_path):
    url = f"journal:///{tmp_path / 'study.log'}"
    cfg = tiny_config("journal", study={"storage": url, "n_trials": 1})
    assert run_study(cfg).complete == 1
    assert (tmp_path / "study.log").stat().st_size > 0
    assert load_existing(url, "journal").trials[0].state == TrialState.COMPLETE


def test_a_storage_that_is_no_url_is_refused():
    with pytest.raises(StudyError, match="is not a URL"):
        make_storage("runs/study.db")
