"""Several studies side by side (`hqsearch compare`): one table, one reference point, one plot of fronts.

Hypervolumes are only comparable at one reference, so the first study's scale is used for all (its
defaulted references taken over the points of every study); each study's front is chosen on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import optuna
import pandas as pd

from hqsearch.analysis.pareto import trials_frame
from hqsearch.analysis.report import study_section
from hqsearch.config.schema import StudyConfig, load_config
from hqsearch.exceptions import ConfigError
from hqsearch.search.front import nondominated
from hqsearch.search.hypervolume import Scale, Score, complete, resolve, score
from hqsearch.study.storage import load_existing, make_storage, shown_url, storage_errors


@dataclass(frozen=True)
class Compared:
    scale: Scale
    table: pd.DataFrame
    files: list[Path]


def open_any(spec: str) -> tuple[str, optuna.Study, StudyConfig | None]:
    """A study from a config file, or from a storage URL (`URL#study` when it holds several)."""
    path = Path(spec)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        cfg = load_config(path)
        return cfg.study.name, load_existing(cfg.study.storage_url, cfg.study.name), cfg
    if "://" not in spec:
        raise ConfigError(f"{spec}: not a study config (.yaml) nor a storage URL")
    url, _, name = spec.partition("#")
    if not name:
        with storage_errors(url):
            names = optuna.get_all_study_names(make_storage(url))
        if len(names) != 1:
            listed = ", ".join(names) or "none"
            raise ConfigError(f"{shown_url(url)} holds {len(names)} studies ({listed}): name one as URL#study")
        name = names[0]
    return name, load_existing(url, name), None


def compare(specs: list[str], out_dir: Path) -> Compared:
    opened = [open_any(s) for s in specs]
    labels = [_unique(name, i, [n for n, _, _ in opened]) for i, (name, _, _) in enumerate(opened)]
    frames = [trials_frame(study) for _, study, _ in opened]
    section, spec = study_section(opened[0][1], opened[0][2])
    every = pd.concat([complete(f) for f in frames if not f.empty] or [pd.DataFrame()], ignore_index=True)
    scale = resolve(section, spec, every)
    for label, frame in zip(labels, frames, strict=True):
        missing = [m for m in scale.metrics if not frame.empty and m not in frame]
        if missing:
            raise ConfigError(f"study {label} has no {', '.join(missing)}: it cannot be scored at {scale}")
    scores = [score(f, scale) if not f.empty else None for f in frames]
    table = pd.DataFrame([_row(label, s) for label, s in zip(labels, scores, strict=True)])
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [out_dir / "compare.csv"]
    table.to_csv(files[0], index=False)
    files.append(_plot(labels, frames, scale, out_dir / "compare.png"))
    return Compared(scale, table, files)


def _unique(name: str, i: int, names: list[str]) -> str:
    return f"{name} ({i + 1})" if names.count(name) > 1 else name


def _row(label: str, s: Score | None) -> dict:
    if s is None:
        return {"study": label, "trainings": 0}
    return {
        "study": label,
        "trainings": s.trainings,
        "harvested": s.harvested,
        "imported": s.imported,
        "epochs": s.epochs,
        "front": s.front,
        "hypervolume": s.hypervolume,
        "test_hypervolume": s.test_hypervolume,
    }


def _plot(labels: list[str], frames: list[pd.DataFrame], scale: Scale, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # the front in its first resource metric (x) against its first maximised one (y)
    y = next((m for m, mx in zip(scale.metrics, scale.maximise, strict=True) if mx), scale.metrics[0])
    x = next((m for m in scale.metrics if m != y), y)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for label, frame in zip(labels, frames, strict=True):
        pts = complete(frame).dropna(subset=list(scale.metrics)) if not frame.empty else frame
        if pts.empty:
            continue
        front = pts[nondominated(pts[list(scale.metrics)].to_numpy(dtype=float), scale.maximise)].sort_values(x)
        line = ax.step(front[x], front[y].cummax(), where="post", alpha=0.7, lw=1)[0]
        ax.scatter(front[x], front[y], s=22, color=line.get_color(), label=f"{label} ({len(front)})")
    if scale.log[scale.metrics.index(x)]:
        ax.set_xscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel(f"{y} (validation split)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
