"""The metric registry is the one list: trials report its names, the config and the docs follow it."""

from pathlib import Path
from typing import get_args

import pytest

from hqsearch.config.metrics import BACKENDS, EVERY, METRICS, markdown_table, not_produced, selectable
from hqsearch.config.schema import Backend
from hqsearch.study.storage import load_existing

ROOT = Path(__file__).parents[1]


def test_producers_are_the_configurable_backends():
    assert set(get_args(Backend)) == set(BACKENDS)
    for m in METRICS.values():
        assert m.producers and m.producers <= set(BACKENDS), m.name


def test_a_trial_reports_every_metric_its_backend_produces(finished_study):
    study = load_existing(finished_study.study.storage_url, finished_study.study.name)
    for t in study.trials:
        reported = set(t.user_attrs["metrics"])
        assert reported <= set(METRICS)  # nothing unregistered
        assert reported == {m.name for m in METRICS.values() if "estimate" in m.producers}
        assert set(t.user_attrs["sources"]) == reported  # and each says where it came from


def test_selectable_and_produced():
    assert selectable("luts").name == "luts"
    with pytest.raises(ValueError, match="unknown metric 'lut'"):
        selectable("lut")
    with pytest.raises(ValueError, match="never used to choose"):
        selectable("test_float_accuracy")
    assert not_produced("luts", "estimate") is None
    assert not_produced("estimated_clock_ns", "yosys") == (
        "backend 'yosys' does not produce 'estimated_clock_ns' (produced by: vivado, vitis, vivado-rtl)"
    )
    assert METRICS["accuracy"].producers == EVERY


def test_docs_metric_table_is_the_registry():
    assert markdown_table() in (ROOT / "docs" / "config.md").read_text()
