"""What a study needs before its first trial, checked once: the data loads and the model builds.

`check` and the start of `run` both call it, so a missing data file or a model that does not fit the
data is one error naming the config key and the file, instead of a study full of failed trials.
Nothing is traced or trained here. `run` lets its executor call it where trials run (the local
executor: in a worker forked from its warm server), so the driver never imports TensorFlow itself.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .config import StudyConfig
from .exceptions import DataFileMissing, DataNotHere, KeyedError

if TYPE_CHECKING:
    from .data import Dataset


@dataclass(frozen=True)
class Ready:
    n_train: int
    n_val: int
    n_test: int
    input_shape: tuple[int, ...]
    n_classes: int
    n_params: int  # of the model built with the first choice of every search dimension

    def __str__(self) -> str:
        return (
            f"data: {self.n_train} train / {self.n_val} validation / {self.n_test} test samples, "
            f"inputs {list(self.input_shape)}, {self.n_classes} classes; model builds ({self.n_params:,} parameters)"
        )


def import_keras_quietly() -> None:
    """Import Keras (and TensorFlow) with file descriptor 2 silenced: TensorFlow's C++ start-up lines
    (absl, oneDNN) bypass Python's logging and would land on the user's terminal."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        import keras  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


@contextmanager
def _located(cfg: StudyConfig) -> Iterator[None]:
    """An error about one config key becomes a `ConfigError` naming the file and line of that key."""
    try:
        yield
    except DataFileMissing as err:
        raise DataNotHere(str(cfg.error(err.key, err.message))) from None
    except KeyedError as err:
        raise cfg.error(err.key, err.message) from None


def _unwritable(path: Path) -> str | None:
    """Why nothing can be written at `path` (a folder, made if missing), or None. Nothing is created: the
    nearest folder that exists is tried with an unnamed temporary file."""
    try:
        existing = path
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            return "it is a file, not a folder" if existing == path else f"{existing} is a file, not a folder"
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        why = err.strerror or str(err)
        return why if existing == path else f"{existing} cannot be written ({why})"
    return None


def check_folders(cfg: StudyConfig) -> None:
    """The folders the driver writes (output_dir: the default storage and the trial folders; artifact_dir)
    can be written: a wrong path is one error naming its field before anything is asked or written,
    instead of a traceback once the study is open. Run where the driver runs, not where trials do."""
    s = cfg.study
    for key, path in (("study.output_dir", s.run_dir), ("study.artifact_dir", s.artifact_path)):
        if why := _unwritable(path):
            raise cfg.error(key, f"cannot write to {path}: {why}")


def load_data(cfg: StudyConfig) -> Dataset:
    """The study's data split, or a `ConfigError` at the key that names what cannot be loaded."""
    from .data import load_dataset

    with _located(cfg):
        return load_dataset(cfg.data)


def preflight(cfg: StudyConfig, data: Dataset | None = None) -> Ready:
    """Load the data (unless the caller has it already), build one model and find the Yosys a study
    synthesises with; a failure is one error naming the key that caused it."""
    import optuna

    import_keras_quietly()

    from .model import build_model
    from .space import suggest

    # one sample of the search space through the same code the driver uses, in a throwaway study
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    probe = optuna.create_study(directions=cfg.study.directions, sampler=optuna.samplers.RandomSampler(seed=0))
    params = suggest(probe.ask(), cfg)
    data = data if data is not None else load_data(cfg)
    with _located(cfg):
        model = build_model(cfg.model, params, data.input_shape, data.n_classes)
    if cfg.synthesis.backend == "yosys":
        # a missing Yosys is one error now, not a failure in every trial; and yowasp's first run, which
        # compiles Yosys (half a minute on 2 cores, once per machine), is not charged to a trial's synth timeout
        from .synth.yosys import find_yosys

        find_yosys(cfg.synthesis.yosys)
    return Ready(
        len(data.y_train), len(data.y_val), len(data.y_test), data.input_shape, data.n_classes, model.count_params()
    )
