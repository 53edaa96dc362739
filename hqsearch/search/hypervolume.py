"""The score of a front: its hypervolume, measured with moocore, and how it grew over a study.

Resource counts span decades, so they are measured in log10 (a design half the size counts the same
at 400 LUTs as at 40,000). Points outside the reference box add nothing. The front is always chosen on
the validation split; its test-split hypervolume measures the same points on the test split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hqsearch.config.metrics import METRICS, Direction
from hqsearch.config.schema import HypervolumeSpec, StudySection
from hqsearch.search.front import nondominated
from hqsearch.study.points import Origin


@dataclass(frozen=True)
class Scale:
    """The space a hypervolume is measured in: metrics, directions, reference point, log10 or not."""

    metrics: tuple[str, ...]
    maximise: tuple[bool, ...]
    reference: tuple[float, ...]
    log: tuple[bool, ...]
    defaulted: tuple[str, ...] = ()  # metrics whose reference was not configured

    def transform(self, values: np.ndarray) -> np.ndarray:
        v = np.array(values, dtype=float).reshape(-1, len(self.metrics))
        for i, log in enumerate(self.log):
            if log:  # counts: 0 and 1 are the same size of nothing
                v[:, i] = np.log10(np.maximum(v[:, i], 1.0))
        return v

    def __str__(self) -> str:
        parts = []
        for m, ref, log, mx in zip(self.metrics, self.reference, self.log, self.maximise, strict=True):
            shown = f"{ref:,.0f}" if abs(ref) >= 1000 and ref == int(ref) else f"{ref:.4g}"
            part = f"{m} {'above' if mx else 'below'} {shown}" + (" in log10" if log else "")
            parts.append(part + (" (default: worst value seen)" if m in self.defaulted else ""))
        return " × ".join(parts)


def hypervolume(values: np.ndarray, scale: Scale) -> float:
    """Hypervolume of the points (rows of raw metric values, in `scale.metrics` order)."""
    import moocore

    v = scale.transform(values)
    ref = scale.transform(np.array([scale.reference]))[0]
    inside = in_box(v, ref, scale.maximise) & np.all(np.isfinite(v), axis=1)
    if not inside.any():
        return 0.0
    return float(moocore.hypervolume(v[inside], ref=ref, maximise=list(scale.maximise)))


def in_box(values: np.ndarray, ref: np.ndarray, maximise: Sequence[bool]) -> np.ndarray:
    """Rows strictly better than the reference in every metric: the points that add volume."""
    return np.all(np.where(np.array(maximise), values > ref, values < ref), axis=1)


def configured_reference(study: StudySection, spec: HypervolumeSpec, metric: str) -> float | None:
    """The value of `metric` past which a point adds nothing, where the config says one: its hypervolume
    reference, else the tightest constraint that bounds it on its bad side (`accuracy >= x`, `luts <= y`).
    The one rule for the hypervolume, the report and a training that stops when it collapses."""
    if metric in spec.reference:
        return float(spec.reference[metric])
    maximise = study.objectives.get(metric, METRICS[metric].direction) == Direction.MAXIMIZE
    bounds = [c.bound for c in study.constraints if c.metric == metric and c.op == (">=" if maximise else "<=")]
    if not bounds:
        return None
    return float(max(bounds) if maximise else min(bounds))


def resolve(study: StudySection, spec: HypervolumeSpec, points: pd.DataFrame) -> Scale:
    """The scale a config asks for. An objective without a configured reference (`configured_reference`)
    takes the worst value among `points` (stated as a default in the output)."""
    metrics = list(spec.reference) or list(study.objectives)
    maximise = [study.objectives.get(m, METRICS[m].direction) == Direction.MAXIMIZE for m in metrics]
    reference, defaulted = [], []
    for m, mx in zip(metrics, maximise, strict=True):
        if (ref := configured_reference(study, spec, m)) is not None:
            reference.append(ref)
        else:
            seen = points[m].dropna() if m in points else pd.Series(dtype=float)
            reference.append(float(seen.min() if mx else seen.max()) if len(seen) else 0.0)
            defaulted.append(m)
    log_scale = spec.log_scale if spec.log_scale is not None else [m for m in metrics if METRICS[m].log_scale]
    return Scale(
        tuple(metrics), tuple(maximise), tuple(reference), tuple(m in log_scale for m in metrics), tuple(defaulted)
    )


def test_metrics(metrics: Sequence[str]) -> list[str]:
    """The test-split twin of each metric that has one (accuracy → test_accuracy), the rest unchanged."""
    return [f"test_{m}" if f"test_{m}" in METRICS else m for m in metrics]


def scores(points: pd.DataFrame, scale: Scale) -> tuple[float, float | None, int]:
    """(validation hypervolume, test hypervolume, front size) of feasible COMPLETE points, the front
    chosen on the validation values."""
    if points.empty:
        return 0.0, None, 0
    val = points[list(scale.metrics)].to_numpy(dtype=float)
    front = nondominated(val, scale.maximise)
    tests = test_metrics(scale.metrics)
    test = None
    if all(t in points for t in tests):
        test = hypervolume(points.loc[front, tests].to_numpy(dtype=float), scale)
    return hypervolume(val[front], scale), test, int(front.sum())


@dataclass(frozen=True)
class Score:
    scale: Scale
    hypervolume: float  # the front's, validation split
    test_hypervolume: float | None  # the same points on the test split
    front: int
    trainings: int
    harvested: int
    imported: int
    epochs: int  # training epochs spent


def complete(trials: pd.DataFrame) -> pd.DataFrame:
    """The points that may stand on the measured front (`front.stands`, the `stands` column of
    `pareto.trials_frame`): what a front is made of."""
    if trials.empty:
        return trials
    return trials[trials["stands"].fillna(False).astype(bool)]


def score(trials: pd.DataFrame, scale: Scale) -> Score:
    """A study's front, scored; `trials` as `pareto.trials_frame` gives them."""
    done = trials[trials["state"] == "COMPLETE"] if not trials.empty else trials
    val, test, size = scores(complete(trials).dropna(subset=list(scale.metrics)), scale)
    origin = done["origin"] if "origin" in done else pd.Series(dtype=str)
    return Score(
        scale,
        val,
        test,
        size,
        trainings=int((origin == Origin.TRAINING).sum()),
        harvested=int((origin == Origin.HARVEST).sum()),
        imported=int((origin == Origin.IMPORT).sum()),
        epochs=int(done["epochs"].sum()) if "epochs" in done else 0,
    )


def history(points: pd.DataFrame, scale: Scale) -> pd.DataFrame:
    """Hypervolume after each training, in the order trainings completed: `points` needs `completed`
    (the parent's completion for harvested points), `training` (True for trainings) and `epochs`; with
    `duration_s`, `seconds` counts from the start of the first training (what a user waits)."""
    rows = []
    candidates = complete(points).dropna(subset=list(scale.metrics))
    trainings = points[(points["state"] == "COMPLETE") & points["training"]].sort_values(["completed", "trial"])
    spent = trainings["epochs"].cumsum()
    began = (trainings["completed"] - trainings["duration_s"]).min() if "duration_s" in trainings else float("nan")
    for i, (completed, epochs) in enumerate(zip(trainings["completed"], spent, strict=True), start=1):
        seen = candidates[candidates["completed"].isna() | (candidates["completed"] <= completed)]
        rows.append((i, int(epochs), completed - began, *scores(seen, scale)))
    columns = ["trainings", "epochs", "seconds", "hypervolume", "test_hypervolume", "front"]
    return pd.DataFrame(rows, columns=columns)


def plot_history(hist: pd.DataFrame, scale: Scale, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), dpi=120, sharey=True)
    for ax, x, label in zip(axes, ("trainings", "epochs"), ("trainings", "training epochs"), strict=True):
        ax.step(hist[x], hist["hypervolume"], where="post", label="front (validation split)", color="tab:blue")
        if hist["test_hypervolume"].notna().any():
            ax.step(hist[x], hist["test_hypervolume"], where="post", label="same front, test split", color="tab:orange")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("hypervolume")
    axes[0].legend(loc="lower right")
    fig.suptitle(f"hypervolume of {scale}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
