"""The picture and the numbers of one training, as every trial stores them."""

from __future__ import annotations

import csv

from hqsearch.pipeline.training_plot import plot_training, write_history

HISTORY = {
    "loss": [2.0, 1.2, 0.9, 0.8],
    "val_loss": [1.9, 1.3, 1.0, 1.1],
    "accuracy": [0.3, 0.6, 0.8, 0.85],
    "val_accuracy": [0.35, 0.62, 0.79, 0.77],
    "ebops": [4000.0, 2500.0, 900.0, 0.0],  # a collapsed last epoch: a gap on the log axis, not an error
    "beta": [1e-6, 1e-5, 1e-4, 1e-3],
}


def test_the_plot_marks_the_harvested_candidates(tmp_path):
    path = plot_training(HISTORY, [(2, 0.62, 2500.0), (3, 0.79, 900.0)], "trial 7", tmp_path / "training.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_the_history_is_a_csv_per_epoch(tmp_path):
    path = write_history({**HISTORY, "lr": [1e-3] * 4}, tmp_path / "training.csv")
    rows = list(csv.DictReader(path.open()))
    assert [r["epoch"] for r in rows] == ["1", "2", "3", "4"]
    assert list(rows[0])[:7] == ["epoch", "loss", "val_loss", "accuracy", "val_accuracy", "ebops", "beta"]
    assert float(rows[2]["ebops"]) == 900.0 and float(rows[3]["lr"]) == 1e-3
