"""Hypervolume on hand-made fronts whose value is known, its defaults, and its history over trainings."""

import math

import numpy as np
import pandas as pd
import pytest

from hqsearch.config.schema import HypervolumeSpec, StudySection
from hqsearch.search.hypervolume import Scale, history, hypervolume, resolve, score

ACC_LUTS = Scale(("accuracy", "luts"), (True, False), (0.8, 100_000), (False, True))


def test_known_front_in_log_luts():
    # two boxes from the reference (0.8, log10 100,000 = 5): 0.1 x 2 and 0.05 x 1
    front = np.array([[0.9, 1_000], [0.95, 10_000]])
    assert hypervolume(front, ACC_LUTS) == pytest.approx(0.25)
    # a dominated point and points outside the reference box change nothing
    more = np.vstack([front, [[0.85, 20_000], [0.7, 10], [0.99, 200_000], [math.nan, 5]]])
    assert hypervolume(more, ACC_LUTS) == pytest.approx(0.25)
    assert hypervolume(np.array([[0.7, 10]]), ACC_LUTS) == 0.0


def test_known_front_in_linear_scale():
    scale = Scale(("accuracy", "luts"), (True, False), (0.8, 10_000), (False, False))
    front = np.array([[0.9, 2_000], [0.95, 6_000]])
    assert hypervolume(front, scale) == pytest.approx(0.1 * 8_000 + 0.05 * 4_000)
    assert "luts below 10,000" in str(scale) and "log10" not in str(scale)


def test_references_from_config_constraints_or_worst_seen():
    study = StudySection(
        name="s",
        objectives={"accuracy": "max", "luts": "min", "latency_cycles": "min"},
        constraints=["luts <= 40000"],
    )
    points = pd.DataFrame({"accuracy": [0.5, 0.9], "luts": [10, 20], "latency_cycles": [3, 7]})
    scale = resolve(study, HypervolumeSpec(), points)
    assert scale.metrics == ("accuracy", "luts", "latency_cycles")
    assert scale.reference == (0.5, 40000, 7)  # worst seen, the constraint's bound, worst seen
    assert scale.log == (False, True, False)  # resource counts in log10
    assert scale.defaulted == ("accuracy", "latency_cycles")
    assert "(default: worst value seen)" in str(scale)

    two = resolve(study, HypervolumeSpec(reference={"accuracy": 0.8, "luts": 1e5}, log_scale=[]), points)
    assert two.metrics == ("accuracy", "luts") and two.reference == (0.8, 1e5) and two.log == (False, False)


def test_history_adds_harvested_points_with_their_parent_and_counts_epochs():
    rows = [  # trial, origin, parent, completed, epochs, accuracy, test_accuracy, luts
        (0, "training", None, 10.0, 40, 0.85, 0.84, 10_000),
        (1, "training", None, 20.0, 40, 0.90, 0.88, 10_000),
        (2, "harvest", 1, 20.0, 0, 0.95, 0.93, 10_000),
        (3, "import", None, None, 0, 0.82, 0.80, 1_000),
        (4, "training", None, 30.0, 40, 0.99, 0.97, 100_000),  # on the reference: adds nothing
    ]
    cols = ["trial", "origin", "parent", "completed", "epochs", "accuracy", "test_accuracy", "luts"]
    frame = pd.DataFrame(rows, columns=cols).assign(state="COMPLETE", stands=True)
    frame["training"] = frame["origin"] == "training"

    hist = history(frame, ACC_LUTS)
    assert list(hist["trainings"]) == [1, 2, 3] and list(hist["epochs"]) == [40, 80, 120]
    assert hist["seconds"].isna().all()  # no durations, no clock
    timed = history(frame.assign(duration_s=[8.0, 15.0, 0.0, None, 12.0]), ACC_LUTS)
    assert list(timed["seconds"]) == [8.0, 18.0, 28.0]  # from the first training's start (completed 10, took 8)
    imported = 0.02 * 2  # (0.82 - 0.8) x (5 - 3), there from the start
    assert hist["hypervolume"].iloc[0] == pytest.approx(imported + 0.03 * 1)
    assert hist["hypervolume"].iloc[1] == pytest.approx(imported + 0.13 * 1)  # trial 2 counts with its parent
    assert hist["hypervolume"].iloc[2] == hist["hypervolume"].iloc[1]
    assert hist["test_hypervolume"].iloc[1] == pytest.approx(0.0 + 0.13 * 1)  # the same points, test values

    s = score(frame, ACC_LUTS)
    assert (s.trainings, s.harvested, s.imported, s.epochs) == (3, 1, 1, 120)
    assert s.hypervolume == pytest.approx(hist["hypervolume"].iloc[-1])
