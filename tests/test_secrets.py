"""A storage password never leaves the user's config: not into the study (which optuna-dashboard shows), its
trials, the log, the command output, or the files report and export write."""

from __future__ import annotations

import json
import logging

import pytest
import yaml
from conftest import tiny_raw
from sqlalchemy.engine import make_url

from hqsearch.cli import main
from hqsearch.config.schema import parse_config
from hqsearch.study.attrs import CONFIG_ATTR
from hqsearch.study.optuna_private import storage_of
from hqsearch.study.storage import StudyError, load_existing, open_study, shown_url, stored_form

PASSWORD = "pw-9Zq4xK7s"


def with_password(url: str) -> tuple[str, str]:
    """`url` with a password (the session's server trusts loopback, so any password opens it), and the password."""
    parsed = make_url(url)
    if parsed.password:
        return url, str(parsed.password)
    return parsed.set(password=PASSWORD).render_as_string(hide_password=False), PASSWORD


def test_shown_url_hides_every_password_and_leaves_the_rest():
    assert shown_url("postgresql+psycopg2://hq:pw@db:5432/hq") == "postgresql+psycopg2://hq:***@db:5432/hq"
    assert shown_url("postgresql://hq:p@ss@db/hq") == "postgresql://hq:***@db/hq"  # an unescaped "@" in it
    assert shown_url("postgresql://hq@db/hq?sslmode=require&password=pw") == (
        "postgresql://hq@db/hq?sslmode=require&password=***"
    )
    assert shown_url("ray://admin:pw@head:10001") == "ray://admin:***@head:10001"
    for url in ("sqlite:///runs/x/study.db", "sqlite:////abs/study.db", "journal:///runs/x.log", "auto", ""):
        assert shown_url(url) == url


def test_the_stored_config_has_no_secret(tmp_path):
    raw = tiny_raw(tmp_path, "stored", study={"storage": "postgresql://hq:pw1@db/hq"})
    raw["execution"]["ray"] = {"address": "ray://admin:pw2@head:10001"}
    stored = json.dumps(stored_form(parse_config(raw)))
    assert "pw1" not in stored and "pw2" not in stored
    assert "postgresql://hq:***@db/hq" in stored and "ray://admin:***@head:10001" in stored


def test_no_password_reaches_the_study_the_log_or_the_files(postgres_url, tmp_path, capsys, caplog):
    url, password = with_password(postgres_url)
    name = "secrets"
    out = tmp_path / "out"
    raw = tiny_raw(out / "run", name, study={"storage": url, "n_trials": 1}, execution={"max_concurrent": 1})
    config = tmp_path / "secrets.yaml"  # the user's own file holds the password; nothing else may
    config.write_text(yaml.safe_dump(raw))
    where = ["--storage", url, "--study", name]
    caplog.set_level(logging.DEBUG)

    assert main(["check", str(config)]) == 0
    assert main(["run", str(config), "--no-progress"]) == 0
    # commands given the storage read the stored config back: its hidden password must not get in the way
    assert main(["status", *where]) == 0
    assert main(["report", *where, "--out", str(out / "report")]) == 0
    assert main(["export", *where, "--trial", "0", "--out", str(out / "export")]) == 0
    assert (out / "export" / "metrics.json").is_file() and (out / "report" / "pareto.csv").is_file()
    other = parse_config({**raw, "study": {**raw["study"], "objectives": {"accuracy": "max"}}})
    with pytest.raises(StudyError) as refused:  # an error that names the storage
        open_study(other)
    said = capsys.readouterr()

    study = load_existing(url, name)
    assert study.user_attrs[CONFIG_ATTR]["study"]["storage"] == shown_url(url) != url
    stored = [study.user_attrs, storage_of(study).get_study_system_attrs(study._study_id)]
    stored += [x for t in study.get_trials(deepcopy=False) for x in (t.user_attrs, t.system_attrs, t.params)]
    assert study.get_trials(deepcopy=False)
    for attrs in stored:
        assert password not in json.dumps(attrs, default=str)
    assert password not in str(refused.value)
    assert password not in said.out and password not in said.err
    assert f"in {shown_url(url)}" in said.out  # `run` names the storage, without its password
    assert password not in caplog.text
    written = [f for f in out.rglob("*") if f.is_file()]  # run folder, artifacts, trial logs, report, exports
    assert len(written) > 10
    assert [f for f in written if password.encode() in f.read_bytes()] == []
