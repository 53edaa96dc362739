"""One trial, stage by stage: data → model → train → calibrate → firmware → emulate → synthesis.

`run_trial` is plain Python with no Optuna in it: executors call it in a fresh worker, the driver turns
its `TrialOutcome` into `tell`. `on_stage(name)` is called as each timed stage starts, so an executor
can enforce per-stage timeouts from outside.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from hqsearch.config.schema import StudyConfig
from hqsearch.search.fidelity import Gate
from hqsearch.search.space import TrialParams
from hqsearch.search.stopping import Outlook
from hqsearch.study.attrs import (
    CURVE_KEY,
    ESTIMATE_KEY,
    INFO_ATTR,
    METRICS_ATTR,
    SKIPPED_ATTR_KEY,
    SOURCES_ATTR,
    TIMINGS_ATTR,
)

_PACKAGES = ("hqsearch", "hgq2", "alkaid", "keras", "optuna")


@dataclass
class TrialOutcome:
    metrics: dict[str, float] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    info: dict = field(default_factory=dict)  # training details, versions, tool
    files: list[str] = field(default_factory=list)  # to upload as artifacts
    error: str | None = None  # set when the trial failed
    candidates: list[TrialOutcome] = field(default_factory=list)  # harvested epochs, each measured alike

    def user_attrs(self) -> dict[str, dict]:
        """What its Optuna trial records as user attributes (the non-empty parts)."""
        parts = (
            (TIMINGS_ATTR, self.timings),
            (INFO_ATTR, self.info),
            (SOURCES_ATTR, self.sources),
            (METRICS_ATTR, self.metrics),
        )
        return {key: value for key, value in parts if value}

    def to_dict(self) -> dict:
        return {
            "metrics": self.metrics,
            "sources": self.sources,
            "timings": self.timings,
            "info": self.info,
            "files": self.files,
            "error": self.error,
        }


def library_versions() -> dict[str, str]:
    """The versions a trial records, with the Keras backend it ran on (`keras_backend`) and that backend's."""
    from hqsearch.keras_backend import versions

    out = {}
    for pkg in _PACKAGES:
        with suppress(PackageNotFoundError):
            out[pkg] = version(pkg)
    return {**out, **versions()}


# Build folders a backend leaves in the trial folder, and the bulky parts of them
BUILD_DIRS = ("rtl", "rtl_sim", "hls4ml_prj")
_BULKY = ("*_prj", "output_*", "obj_dir", "*.so", "*.o", "*.dcp", ".Xil")


def archive_builds(trial_dir: Path, keep_build: bool) -> list[Path]:
    """Pack each build folder as `<name>.tar.gz` (sources, scripts, reports; everything with keep_build)
    and remove the folder unless keep_build, so studies of hundreds of trials stay small on disk."""
    import fnmatch
    import tarfile

    def skip(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        if keep_build or "/" not in info.name:  # the folder itself is kept whatever its name
            return info
        name = Path(info.name).name
        return None if any(fnmatch.fnmatch(name, pat) for pat in _BULKY) else info

    archives = []
    for name in BUILD_DIRS:
        folder = trial_dir / name
        if folder.is_dir():
            archive = trial_dir / f"{name}.tar.gz"
            with tarfile.open(archive, "w:gz") as tar:
                tar.add(folder, arcname=name, filter=skip)
            archives.append(archive)
            if not keep_build:
                shutil.rmtree(folder, ignore_errors=True)
    return archives


@dataclass
class Trained:
    """What the training stage hands to the synthesis stage.

    In one process the design itself is handed over. Across processes or machines (Ray) the RTL backends
    need only the traced logic, which pickles; the HLS backends rebuild their project from the saved
    model, found at its path (on a shared filesystem, or written there from the training's files, see
    `executors.parcel`). A later synthesis gets the model's bytes.
    """

    outcome: TrialOutcome
    model_path: Path
    ebops: float
    design: Any = None  # synth.Design, only within one process
    comb: Any = None  # alkaid CombLogic
    model_bytes: bytes | None = None
    candidates: list[Trained] = field(default_factory=list)  # harvested epochs, designed like the final model

    def portable(self) -> Trained:
        """A copy that pickles: no live Keras objects, the traced logic."""
        return replace(self, design=None, candidates=[c.portable() for c in self.candidates])


def _timed(timings: dict[str, float], on_stage: Callable[[str], None]):
    @contextmanager
    def stage(name: str) -> Iterator[None]:
        on_stage(name)
        t0 = time.perf_counter()
        yield
        timings[name] = time.perf_counter() - t0

    return stage


def train_stage(
    cfg: StudyConfig,
    params: TrialParams,
    trial_dir: Path,
    seed: int | None = None,
    on_stage: Callable[[str], None] = lambda stage: None,
    start_from: Path | None = None,
    outlook: Outlook | None = None,
) -> Trained:
    """Stages `train` (data, model, training, calibration) and `firmware` (the designs and their emulation:
    the final model's, then each harvested candidate's). With `start_from`, a saved model of the same
    architecture, training continues from its weights (under this trial's L1/L2, learning rate and ramp).
    With `outlook`, a training that falls too far behind the study's front stops (see `stopping`)."""
    from hqsearch.keras_backend import device
    from hqsearch.keras_backend import seed as seed_all
    from hqsearch.pipeline.data import load_dataset
    from hqsearch.pipeline.harvest import InRunFront, thin
    from hqsearch.pipeline.model import build_model
    from hqsearch.pipeline.train import StopWhenBehind, StopWhenCollapsed, calibrate, epochs_of, train
    from hqsearch.search.stopping import curve

    cfg = cfg.with_synthesis(**params.hls4ml)
    trial_dir.mkdir(parents=True, exist_ok=True)
    stage = _timed(timings := {}, on_stage)
    if seed is not None:
        seed_all(seed)

    with stage("train"):
        data = load_dataset(cfg.data)
        model = build_model(cfg.model, params, data.input_shape, data.n_classes)
        started = _continue(model, start_from, data) if start_from is not None else {}
        front = InRunFront()
        stop = StopWhenCollapsed(accuracy_floor(cfg)) if cfg.training.beta_schedule != "pid" else None
        planned = epochs_of(cfg.training, params)
        behind = StopWhenBehind(outlook, planned) if outlook is not None else None
        harvest = front if cfg.training.harvest.max_candidates else None
        watch = [w for w in (harvest, stop, behind) if w is not None]
        fit = train(model, data, cfg.training, params, watch=watch)
        ebops = calibrate(model, data.x_train)

    with stage("firmware"):
        trained = evaluate(cfg, model, ebops, data, trial_dir / "model.keras", trial_dir)
        picked = thin(front.front, cfg.training.harvest.max_candidates, exclude_epoch=fit.epochs)
        errors, built = [], set()
        for c in picked:  # each candidate goes the final model's way: calibrate, save, design, emulate
            folder = trial_dir / "harvest" / f"epoch_{c.epoch:04d}"
            try:
                model.set_weights(c.weights)
                folder.mkdir(parents=True, exist_ok=True)
                path = folder / f"epoch_{c.epoch:04d}.keras"
                cand = evaluate(cfg, model, calibrate(model, data.x_train), data, path, folder)
            except Exception as err:  # one candidate that cannot be built costs that candidate only
                errors.append(f"epoch {c.epoch}: {type(err).__name__}: {err}")
                continue
            beta = params.beta if c.beta is None else c.beta
            cand.outcome.info.update(epoch=c.epoch, beta=beta, val_accuracy=c.val_accuracy, training_ebops=c.ebops)
            trained.candidates.append(cand)
            built.add(c.epoch)

        taken = [(c.epoch, c.val_accuracy, c.ebops) for c in picked if c.epoch in built]
        try:
            trained.outcome.files += _training_record(fit.history, taken, params, started, trial_dir)
        except Exception as err:  # the picture of a good training is not worth the training
            errors.append(f"training.png: {type(err).__name__}: {err}")

    out = trained.outcome
    out.timings.update(timings)
    out.info.update(
        epochs=fit.epochs,
        final_loss=fit.final_loss,
        val_accuracy=fit.val_accuracy,
        training_ebops=fit.training_ebops,
        final_beta=fit.final_beta,
        first_val_accuracy=fit.first_val_accuracy,
        stopped_early=next((w.reason for w in (stop, behind) if w is not None and w.reason), None),
        unspent_epochs=planned - fit.epochs,  # back in the study's budget
        **({CURVE_KEY: c} if (c := curve(fit.history)) is not None else {}),
        **started,
        harvest={"in_run_front": len(front.front), "candidates": len(trained.candidates), "errors": errors},
        versions=library_versions(),
        device=device(),  # what it trained on: cpu, cuda:0
        train_pid=os.getpid(),
    )
    return trained


def _training_record(history: dict, harvested: list, params: TrialParams, started: dict, folder: Path) -> list[str]:
    """`training.csv` and `training.png`: the training's epochs, and where its candidates were taken."""
    from hqsearch.pipeline.training_plot import plot_training, write_history

    ramp = f", ramp from {params.beta_start:.3g}" if params.beta_start is not None else ""
    hold = f" after {params.hold} epochs" if params.hold else ""
    start = f"continued (val accuracy {started['start_val_accuracy']:.3f} at the start)" if started else "fresh"
    title = (
        f"{folder.name}: beta {params.beta:.3g}{ramp}{hold}; {'-'.join(map(str, params.widths))} units, "
        f"weights {params.weights}, activations {params.activations}; {start}; {len(harvested)} harvested"
    )
    files = [
        write_history(history, folder / "training.csv"),
        plot_training(history, harvested, title, folder / "training.png"),
    ]
    return [str(f) for f in files]


def accuracy_floor(cfg: StudyConfig) -> float | None:
    """Validation accuracy under which a point adds nothing (see `hypervolume.configured_reference`)."""
    from hqsearch.search.hypervolume import configured_reference

    return configured_reference(cfg.study, cfg.report.hypervolume, "accuracy")


def _continue(model, start_from: Path, data) -> dict:
    """Take the checkpoint's weights (its variables match: same architecture and heterogeneity); returns
    what the model scores with them before any training, as evidence of where it starts."""
    from hqsearch.firmware.emulate import load_model

    if not start_from.is_file():
        raise FileNotFoundError(f"the checkpoint to continue from is gone: {start_from}")
    import numpy as np

    from hqsearch.keras_backend import one_batch

    model.set_weights(load_model(start_from).get_weights())
    logits = model.predict(data.x_val, verbose=0, batch_size=one_batch(len(data.x_val)))
    return {"start_val_accuracy": float(np.mean(np.argmax(logits, axis=-1) == data.y_val))}


def evaluate(cfg: StudyConfig, model, ebops: float, data, model_path: Path, folder: Path) -> Trained:
    """A calibrated model's design and its accuracy on the firmware emulation, on both splits; the model
    is saved at `model_path` first. The objectives use the validation split; the test split is recorded."""
    from hqsearch.backends import build_design, uses_hls4ml
    from hqsearch.firmware.emulate import emulate
    from hqsearch.keras_backend import save

    save(model, model_path)
    design = build_design(model, ebops, cfg.synthesis, folder)
    hls = uses_hls4ml(cfg.synthesis)
    if hls:
        from hqsearch.firmware.emulate import emulate_hls

        run, emu_source = partial(emulate_hls, design.project, model), "hls4ml C++ emulation"
    else:
        run, emu_source = partial(emulate, design.comb, model), "alkaid bit-exact emulation"
    val, test = run(data.x_val, data.y_val), run(data.x_test, data.y_test)
    rtl_mismatches = None
    if cfg.synthesis.verify_rtl and not hls:
        from hqsearch.backends import get_backend
        from hqsearch.firmware.emulate import verify_rtl

        fuses = get_backend(cfg.synthesis.backend).fuses_adders
        rtl_mismatches = verify_rtl(design.comb, cfg.synthesis, folder / "rtl_sim", data.x_test, fuses_adders=fuses)

    out = TrialOutcome(files=[str(model_path)])
    out.metrics = {
        "accuracy": val.accuracy,
        "float_accuracy": val.float_accuracy,
        "test_accuracy": test.accuracy,
        "test_float_accuracy": test.float_accuracy,
    }
    out.sources = {
        "accuracy": f"{emu_source}, validation split",
        "float_accuracy": "keras, validation split",
        "test_accuracy": f"{emu_source}, test split",
        "test_float_accuracy": "keras, test split",
    }
    out.info = {
        "mismatches": val.mismatches + test.mismatches,  # firmware vs Keras, both splits
        "emulated_outputs": val.n_outputs + test.n_outputs,
        "n_val": len(data.y_val),
        "n_test": len(data.y_test),
        "rtl_mismatches": rtl_mismatches,  # Verilator vs alkaid emulation, with verify_rtl
    }
    return Trained(out, model_path, ebops, design, design.comb)


def synth_stage(
    cfg: StudyConfig,
    params: TrialParams,
    trained: Trained,
    trial_dir: Path,
    on_stage: Callable[[str], None] = lambda stage: None,
    gate: Gate | None = None,
) -> TrialOutcome:
    """Stage `synth` for the final design, then for each candidate (a timeout applies to each design):
    estimate, measure where `gate` lets it (see `fidelity`), pack the build folders, write the metrics
    file. A design measured here joins the gate, so a later candidate is judged against it too. A
    candidate that fails is dropped and named."""
    cfg = cfg.with_synthesis(**params.hls4ml)
    out = synth_one(cfg, params, trained, trial_dir, on_stage, "metrics.json", gate=gate)
    _into(gate, out, "this training's final model")
    for cand in trained.candidates:
        epoch = cand.outcome.info["epoch"]
        try:
            folder = cand.model_path.parent
            done = synth_one(cfg, params, cand, folder, on_stage, f"{folder.name}.json", False, gate)
        except Exception as err:
            out.info["harvest"]["errors"].append(f"epoch {epoch}: {type(err).__name__}: {err}")
            continue
        out.candidates.append(done)
        _into(gate, done, f"epoch {epoch} of this training")
    return out


def _into(gate: Gate | None, out: TrialOutcome, label: str) -> None:
    if gate is not None and not out.info.get(SKIPPED_ATTR_KEY):
        gate.add(out.metrics, out.info.get(ESTIMATE_KEY), label)


def synth_one(
    cfg: StudyConfig,
    params: TrialParams | None,  # None for an imported checkpoint or a later synthesis
    trained: Trained,
    folder: Path,
    on_stage: Callable[[str], None],
    metrics_name: str,
    upload_reports: bool = True,  # a candidate's reports stay in its folder: its model and metrics travel
    gate: Gate | None = None,
) -> TrialOutcome:
    """One design estimated, then measured by the study's backend unless `gate` finds it cannot reach the
    measured front or defers it (see `fidelity`); its build folders packed, its metrics file written."""
    from hqsearch.backends import Design, measure, uses_hls4ml

    out = trained.outcome
    stage = _timed(out.timings, on_stage)
    folder.mkdir(parents=True, exist_ok=True)
    with stage("synth"):
        started = time.monotonic()
        design = trained.design
        if design is None and trained.comb is not None and not uses_hls4ml(cfg.synthesis):
            design = Design(None, trained.comb, trained.ebops)  # trained elsewhere; the traced logic is enough
        elif design is None:
            design = _rebuild_design(cfg, trained, folder)
        # the tool gets what is left of the stage, so it is killed by the code that knows why
        limit = cfg.execution.timeouts.synth
        left = None if limit is None else limit - (time.monotonic() - started)
        emulated = {**out.metrics, "ebops": design.ebops}
        skip = partial(gate.decide, emulated) if gate is not None else (lambda estimate: None)
        searched = bool(cfg.search_space.hls4ml.searched)
        synth = measure(design, cfg.synthesis, folder, timeout=left, skip=skip, family=searched)

    out.metrics.update(synth.metrics)
    out.sources.update(synth.sources)
    out.info.update(
        synth_tool=synth.tool,
        synth_cache_hit=synth.cache_hit,
        synth_cache_key=synth.cache_key,
        synth_details=synth.details,
        synth_pid=os.getpid(),
        **{ESTIMATE_KEY: synth.estimate, SKIPPED_ATTR_KEY: synth.skipped},
    )
    reports = folder / "reports"  # out of the build folders, which are packed and removed below
    reports.mkdir(exist_ok=True)
    kept = [str(shutil.copy2(f, reports / Path(f).name)) for f in synth.files]
    kept += [str(a) for a in archive_builds(folder, cfg.synthesis.keep_build)]
    if upload_reports:
        out.files += kept
    metrics_path = folder / metrics_name
    metrics_path.write_text(json.dumps({"params": params and params.to_dict(), **out.to_dict()}, indent=2, default=str))
    out.files.append(str(metrics_path))
    return out


def synth_later(
    cfg: StudyConfig,
    model_path: Path,
    ebops: float,
    folder: Path,
    on_stage: Callable[[str], None] = lambda stage: None,
    model_bytes: bytes | None = None,
    settings: dict | None = None,
) -> TrialOutcome:
    """Stage `synth` alone, for a point told with its estimate that could now reach the measured front:
    its design rebuilt from the saved model (tracing is deterministic) with the hls4ml `settings` its
    trial chose, then measured by the backend."""
    trained = Trained(TrialOutcome(), Path(model_path), ebops, model_bytes=model_bytes)
    return synth_one(cfg.with_synthesis(**(settings or {})), None, trained, Path(folder), on_stage, "metrics.json")


def _rebuild_design(cfg: StudyConfig, trained: Trained, folder: Path):
    from hqsearch.backends import build_design
    from hqsearch.firmware.emulate import load_model

    path = trained.model_path
    if trained.model_bytes is not None:
        path = folder / trained.model_path.name
        path.write_bytes(trained.model_bytes)
    model = load_model(path)
    return build_design(model, trained.ebops, cfg.synthesis, folder)


def run_trial(
    cfg: StudyConfig, params: TrialParams, trial_dir: Path, gate: Gate | None = None, **train: Any
) -> TrialOutcome:
    """Both stages in this process, the design handed over in memory; `train` is `train_stage`'s keywords
    (`seed`, `on_stage`, `start_from`, `outlook`)."""
    trained = train_stage(cfg, params, trial_dir, **train)
    return synth_stage(cfg, params, trained, trial_dir, train.get("on_stage", lambda stage: None), gate)
