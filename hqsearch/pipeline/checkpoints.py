"""Existing HGQ2 checkpoints as points of a study (`hqsearch import`).

A user who already trained (a folder of `ParetoFront` checkpoints, a model from a paper) starts a
study from it: each checkpoint is calibrated on the study's training split, converted, emulated on the
validation and test splits and measured by the study's backend, exactly as a trial's model is, and
added with the file it came from. The same file (by content) is never imported twice.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import optuna
from optuna.artifacts import FileSystemArtifactStore, upload_artifact

from hqsearch.config.metrics import unusable
from hqsearch.config.schema import StudyConfig
from hqsearch.exceptions import ConfigError
from hqsearch.pipeline.data import Dataset
from hqsearch.pipeline.trial import evaluate, synth_one
from hqsearch.search.front import constraint_values
from hqsearch.study.attrs import EPOCH_ATTR, MODEL_ARTIFACT_ATTR, ORIGIN_ATTR, SHA_ATTR, SOURCE_ATTR
from hqsearch.study.points import Origin, add_point, origin
from hqsearch.study.storage import artifact_store, open_study

_EPOCH = re.compile(r"epoch=(\d+)")  # HGQ2 ParetoFront's file names: epoch=123_val_accuracy=..._ebops=...


@dataclass(frozen=True)
class Imported:
    source: Path
    status: Literal["added", "present", "failed"]
    note: str  # the metrics, or why it failed
    number: int | None = None  # the study's trial number, when added


def find_models(paths: Iterable[Path]) -> list[Path]:
    """`.keras` files named, or found under folders named, in a stable order; a clear error otherwise."""
    found: list[Path] = []
    for p in paths:
        if p.is_dir():
            inside = sorted(p.rglob("*.keras"))
            if not inside:
                raise ConfigError(f"{p}: no .keras models in this folder")
            found += inside
        elif p.is_file():
            if p.suffix != ".keras":
                raise ConfigError(f"{p}: expected a Keras 3 model file (.keras) or a folder of them")
            found.append(p)
        else:
            raise ConfigError(f"{p}: no such file or folder")
    return list(dict.fromkeys(found))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def import_checkpoints(
    cfg: StudyConfig, paths: Iterable[Path], on_point: Callable[[Imported], None] = lambda i: None
) -> list[Imported]:
    """Evaluate each checkpoint into the config's study. Every file is loaded before anything is
    written, so an unreadable one is an error that leaves the study as it was."""
    from hqsearch.firmware.emulate import load_model
    from hqsearch.pipeline.preflight import load_data, preflight

    models = find_models(paths)
    data = load_data(cfg)
    preflight(cfg, data)  # the study's data loads and its model builds, or one error naming the key
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # Keras retraces predict per model: not news
    loaded = []
    for path in models:
        try:
            loaded.append((path, load_model(path)))
        except Exception as err:  # Keras raises many types for a file it cannot read
            raise ConfigError(
                f"{path}: cannot load as a Keras model ({type(err).__name__}: {str(err)[:200]})"
            ) from None
    study = open_study(cfg)
    store = artifact_store(cfg)
    have = {t.user_attrs.get(SHA_ATTR) for t in study.get_trials(deepcopy=False) if origin(t) is Origin.IMPORT}
    done: list[Imported] = []
    for path, model in loaded:
        sha = _sha256(path)
        if sha in have:
            result = Imported(path, "present", "already in the study")
        else:
            result = _import_one(cfg, study, store, data, path, model, sha)
            have.add(sha)
        done.append(result)
        on_point(result)
    return done


def _import_one(
    cfg: StudyConfig, study: optuna.Study, store: FileSystemArtifactStore, data: Dataset, path: Path, model, sha: str
) -> Imported:
    from hqsearch.pipeline.train import calibrate

    folder = cfg.study.run_dir / "imported" / sha[:12]
    folder.mkdir(parents=True, exist_ok=True)
    try:
        trained = evaluate(cfg, model, calibrate(model, data.x_train), data, folder / path.name, folder)
        out = synth_one(cfg, None, trained, folder, lambda stage: None, "metrics.json")
    except Exception as err:  # one checkpoint that cannot be converted or measured costs that one only
        return Imported(path, "failed", f"{type(err).__name__}: {err}")
    if (why := unusable(out.metrics, cfg.study.needed_metrics, cfg.synthesis.backend)) is not None:
        return Imported(path, "failed", why)
    attrs = {
        **out.user_attrs(),
        ORIGIN_ATTR: Origin.IMPORT.value,
        SOURCE_ATTR: str(path.resolve()),
        SHA_ATTR: sha,
        # a study-level artifact: an added trial is COMPLETE already and takes no artifacts of its own
        MODEL_ARTIFACT_ATTR: upload_artifact(
            artifact_store=store, file_path=str(folder / path.name), study_or_trial=study
        ),
    }
    if m := _EPOCH.search(path.name):
        attrs[EPOCH_ATTR] = int(m[1])
    constraints = constraint_values(cfg.study, out.metrics, out.info)
    add_point(study, cfg.study.values(out.metrics), attrs, constraints)
    number = study.get_trials(deepcopy=False)[-1].number  # for the message only
    shown = ", ".join(f"{m} {out.metrics[m]:,.4g}" for m in cfg.study.metric_names)
    return Imported(path, "added", shown, number)
