"""The Keras backend a study runs on (`execution.keras_backend`): trainings, harvest, continuation, export
and import on JAX and on TensorFlow in forked workers, models that cross from one backend to the other,
and a JAX training killed at its stage's timeout with everything it started.

This test process runs Keras on TensorFlow (conftest); the studies' workers run the backend their
config names, so exporting and importing a JAX-trained point here also crosses backends.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import run_tiny, tiny_raw
from helpers import outputs, process_alive, run_on_jax
from optuna.trial import TrialState

from hqsearch.cli import main
from hqsearch.config.schema import parse_config
from hqsearch.driver import run_study
from hqsearch.firmware.emulate import load_model
from hqsearch.study.attrs import CONTINUES_ATTR
from hqsearch.study.points import Origin, origin
from hqsearch.study.storage import load_existing

BACKENDS = ["jax", "tensorflow"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_study_trains_harvests_continues_and_exports_on_its_backend(backend, tmp_path_factory, tmp_path, capsys):
    cfg, summary = run_tiny(
        tmp_path_factory,
        f"on_{backend}",
        study={"n_trials": None, "budget": 12, "objectives": {"accuracy": "max", "luts": "min"}},
        training={
            "epochs": 6,
            "batch_size": 64,
            "harvest": {"max_candidates": 2},
            "continuation": {"share": 1.0, "startup": 1},
        },
        search_space={"beta": {"low": 1e-5, "high": 3e-4, "log": True}, "ramp": {"start": 0.3}},
        model={"widths": [16]},
        execution={"max_concurrent": 1, "keras_backend": backend},
    )
    study = load_existing(cfg.study.storage_url, cfg.study.name)
    trainings = [t for t in study.trials if origin(t) is Origin.TRAINING]
    assert [t.state for t in trainings] == [TrialState.COMPLETE] * 2, [t.user_attrs.get("error") for t in trainings]
    for t in trainings:
        info = t.user_attrs["info"]
        assert info["versions"]["keras_backend"] == backend
        assert ("jax" in info["versions"]) == (backend == "jax")
        assert info["train_pid"] != os.getpid()  # in a forked worker
    fresh, continued = trainings
    assert continued.user_attrs[CONTINUES_ATTR] is not None
    assert continued.user_attrs["info"]["start_val_accuracy"] > 0.5  # it started from its point's weights
    harvested = [t for t in study.trials if origin(t) is Origin.HARVEST and t.state == TrialState.COMPLETE]
    assert harvested

    # exported here, on this process's backend, and imported back: the point's numbers survive both
    out = tmp_path / "export"
    where = ["--storage", cfg.study.storage_url, "--study", cfg.study.name, "--trial", str(fresh.number)]
    assert main(["export", *where, "--out", str(out)]) == 0
    raw = tiny_raw(tmp_path / "imported", "imported", study={"objectives": {"accuracy": "max", "luts": "min"}})
    config = tmp_path / "imported.yaml"
    config.write_text(yaml.safe_dump(raw))
    capsys.readouterr()
    assert main(["import", str(config), str(out / "model.keras")]) == 0
    assert "1 imported" in capsys.readouterr().out
    (imported,) = load_existing(f"sqlite:///{raw['study']['output_dir']}/study.db", "imported").trials
    for metric in ("accuracy", "test_accuracy", "luts"):
        assert imported.user_attrs["metrics"][metric] == pytest.approx(fresh.user_attrs["metrics"][metric])


_ON_JAX = """
import sys
import numpy as np
import keras
import helpers
from hqsearch.firmware.emulate import load_model
from hqsearch.keras_backend import save
model = load_model(sys.argv[1])
np.save(sys.argv[2], helpers.outputs(model))
save(model, sys.argv[3])
print("tensorflow" in sys.modules, keras.config.backend())
"""


def test_a_model_saved_on_one_backend_is_the_same_model_and_firmware_on_the_other(tiny_model, tmp_path):
    """Saved here on TensorFlow (this process's backend) and loaded on JAX in a process of its own, which
    saves it again as a trial does, without importing TensorFlow: loaded back here, it is the same model."""
    from hqsearch.keras_backend import active

    _, path, _ = tiny_model
    assert active() == "tensorflow"
    resaved, out = tmp_path / "jax.keras", tmp_path / "jax.npy"
    assert run_on_jax(_ON_JAX, str(path), str(out), str(resaved)).split()[-2:] == ["False", "jax"]
    on_tf, on_jax = outputs(load_model(path)), np.load(out)
    assert np.array_equal(on_tf[1], on_jax[1])  # the traced firmware: bit for bit
    np.testing.assert_allclose(on_tf[0], on_jax[0], rtol=1e-5, atol=1e-5)  # Keras's float outputs
    assert np.array_equal(outputs(load_model(resaved))[1], on_tf[1])  # and back: saved on JAX, loaded on TensorFlow


def _workers_writing(log: Path) -> set[int]:
    """Processes whose standard output is `log`: a trial's worker (`prepare_worker`) and what it started."""
    found = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if os.readlink(proc / "fd" / "1") == str(log):
                    found.add(int(proc.name))
            except OSError:
                continue
    return found


def test_a_jax_training_over_its_timeout_is_killed_with_its_threads(tmp_path):
    raw = tiny_raw(tmp_path, "jax_timeout", study={"n_trials": 1}, training={"epochs": 100000})
    raw["execution"].update(max_concurrent=1, max_failures=1, keras_backend="jax", timeouts={"train": 12})
    cfg = parse_config(raw)
    seen: set[int] = set()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for log in tmp_path.glob("trials/*/trial.log"):
                seen.update(_workers_writing(log))
            time.sleep(0.5)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        assert run_study(cfg).complete == 0
    finally:
        stop.set()
        thread.join()
    assert seen, "no worker was seen training: nothing was tested"
    deadline = time.monotonic() + 10
    while (left := [p for p in seen if process_alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"processes of the killed training outlived it: {left}"
    (t,) = load_existing(cfg.study.storage_url, "jax_timeout").trials
    assert t.state == TrialState.FAIL and "'train' ran over its timeout" in t.user_attrs["error"]


def test_seeding_a_jax_process_seeds_as_keras_does_without_importing_tensorflow():
    """A JAX fork server does not import TensorFlow (seconds per server): `seed` must not bring it in."""
    code = """
import random, sys
import numpy as np
import keras
from hqsearch.keras_backend import seed
seed(7)
ours = (random.random(), np.random.rand(), float(keras.random.uniform(())))
loaded = "tensorflow" in sys.modules
keras.utils.set_random_seed(7)
theirs = (random.random(), np.random.rand(), float(keras.random.uniform(())))
print(loaded, ours == theirs)
"""
    assert run_on_jax(code).split() == ["False", "True"]
