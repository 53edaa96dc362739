"""Callables that study configs in the tests name as `helpers:...`; they run inside trial workers."""

from __future__ import annotations

import multiprocessing
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def _digits():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return x / 16.0, y


def _in_preflight() -> bool:
    """The data check before a study starts: in the local executor's preflight worker, or in the driver
    (the test process) for the Ray executor and `check`. Trials run in other worker processes."""
    return multiprocessing.current_process().name == "preflight" or os.getpid() == int(os.environ["HQ_TEST_DRIVER_PID"])


def digits_failing_once():
    """In a worker, raises on the first call of a test (marked by a file), then behaves like digits."""
    marker = Path(os.environ["HQ_TEST_MARKER"])
    if not _in_preflight() and not marker.exists():
        marker.write_text("failed once")
        raise RuntimeError("data source broke on purpose")
    return _digits()


def digits_slow():
    """Hangs in a worker, so a stage timeout must end it."""
    if not _in_preflight():
        time.sleep(120)
        raise AssertionError("the stage timeout should have killed this worker")
    return _digits()


def always_fails():
    raise ValueError("no data today")


def small_model(input_shape, n_classes, params):
    import keras
    from hgq.layers import QDense

    return keras.Sequential([keras.Input(input_shape), QDense(4, activation="relu"), QDense(n_classes)])


def plain_keras_model(input_shape, n_classes, params):
    import keras

    return keras.Sequential([keras.Input(input_shape), keras.layers.Dense(n_classes)])


def digits_in_workers_only():
    """The digits data for the preflight; raises in every trial worker."""
    if _in_preflight():
        return _digits()
    raise RuntimeError("data source broke on purpose")


def outputs(model) -> np.ndarray:
    """A Keras model's float outputs and its traced firmware's, on the digits test split, on this process's
    Keras backend."""
    import numpy as np

    from hqsearch.config.schema import DataSection, SynthesisSection
    from hqsearch.firmware.emulate import trace
    from hqsearch.pipeline.data import load_dataset

    x = load_dataset(DataSection()).x_test
    return np.stack([np.asarray(model.predict(x, verbose=0)), trace(model, SynthesisSection()).predict(x)])


def run_on_jax(code: str, *args: str) -> str:
    """What `code` (run as `python -c code args...`) prints in a process of its own whose Keras runs on JAX;
    the tests' own processes run it on TensorFlow. The process must exit 0."""
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    ran = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr[-3000:]
    return ran.stdout


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_alive(pid: int) -> bool:
    """Whether `pid` runs: a zombie (killed, not yet reaped by its new parent) counts as ended."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def ended(pid: int, within: float) -> bool:
    """Whether `pid` ends within `within` seconds (a killed process takes a moment to be torn down)."""
    deadline = time.monotonic() + within
    while process_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def brute_front(trials, directions) -> set[int]:
    """The Pareto front by pairwise dominance, for tests to check the code's front against: the COMPLETE,
    feasible trials (every constraint <= 0) that were measured (a point told with its estimate, with
    `info.synth_skipped` set, never counts), none of which another such trial dominates."""
    from optuna.study import StudyDirection
    from optuna.trial import TrialState

    sign = [1.0 if d == StudyDirection.MINIMIZE else -1.0 for d in directions]  # smaller is better, each
    points = {
        t.number: [s * v for s, v in zip(sign, t.values, strict=True)]
        for t in trials
        if t.state == TrialState.COMPLETE
        and all(c <= 0 for c in _values(t.constraints))
        and not (t.user_attrs.get("info") or {}).get("synth_skipped")
    }

    def dominates(a: list[float], b: list[float]) -> bool:
        return all(x <= y for x, y in zip(a, b, strict=True)) and any(x < y for x, y in zip(a, b, strict=True))

    return {n for n, p in points.items() if not any(dominates(q, p) for m, q in points.items() if m != n)}


def _values(constraints) -> list[float]:
    return list(constraints.values()) if isinstance(constraints, dict) else list(constraints or [])


def digits_held_in_preflight():
    """The digits data, after holding the preflight until a test interrupts it: the preflight marks the
    file `HQ_TEST_MARKER` when it is waiting."""
    if _in_preflight():
        Path(os.environ["HQ_TEST_MARKER"]).write_text("in the preflight")
        time.sleep(60)
    return _digits()


class StartInterrupted(multiprocessing.context.ForkServerProcess):
    """A fork-server process whose start is hit by a Ctrl-C as it returns, once its pid is printed."""

    def start(self) -> None:
        super().start()
        print(self.pid, flush=True)
        raise KeyboardInterrupt


def hold(seconds: float, on_stage) -> None:  # noqa: ARG001
    """Work for `forked.Forked` that takes `seconds`."""
    time.sleep(seconds)


def environment_value(name: str, on_stage) -> str | None:  # noqa: ARG001
    """Work for `forked.Forked`: the value of the variable `name` in the process that runs it."""
    return os.environ.get(name)


def paths_resolved_building_a_layer(on_stage) -> int:  # noqa: ARG001
    """Work for `forked.Forked`: how many paths the process resolves while HGQ2 makes one layer, which reads
    its arguments from its caller's frame (`inspect`, which maps each imported module to its file once)."""
    from unittest import mock

    from hgq.layers import QDense

    with mock.patch("os.path.realpath", wraps=os.path.realpath) as realpath:
        QDense(4)
    return realpath.call_count


def start_driver(tmp_path, raw: dict, **popen) -> subprocess.Popen:
    """`hqsearch run` on `raw` in its own process, as a user starts it, with `popen`'s arguments (what it prints
    goes to its `log` unless they say where). Its `config` is the file it runs."""
    import yaml

    config = tmp_path / f"{raw['study']['name']}.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    log = tmp_path / "driver.log"  # what it prints, for a failed wait to quote
    if "stdout" not in popen:
        popen |= {"stdout": log.open("w"), "stderr": subprocess.STDOUT}
    driver = subprocess.Popen([sys.executable, "-m", "hqsearch.cli", "run", str(config), "--no-progress"], **popen)
    driver.log, driver.config = log, config  # type: ignore[attr-defined]
    return driver
