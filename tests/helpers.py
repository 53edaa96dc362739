"""Callables that study configs in the tests name as `helpers:...`; they run inside trial workers."""

from __future__ import annotations

import os
import time
from pathlib import Path


def digits_failing_once():
    """Raises on the first call of a test (marked by a file), then behaves like the digits source."""
    marker = Path(os.environ["HQ_TEST_MARKER"])
    if not marker.exists():
        marker.write_text("failed once")
        raise RuntimeError("data source broke on purpose")
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return x / 16.0, y


def digits_slow():
    time.sleep(120)
    raise AssertionError("the stage timeout should have killed this worker")


def always_fails():
    raise ValueError("no data today")


def small_model(input_shape, n_classes, params):
    import keras
    from hgq.layers import QDense

    return keras.Sequential([keras.Input(input_shape), QDense(4, activation="relu"), QDense(n_classes)])
