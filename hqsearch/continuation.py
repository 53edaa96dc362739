"""Where the next training starts: fresh, or from a stored checkpoint that the front needs most.

HGQ removes bits best along a long, slow ramp of beta; a chain of continuations is one such ramp, and
its branches explore what one ramp cannot. After `startup` fresh trainings, a `share` of the trainings
continue a point of the study (a training's final model or a harvested epoch): the front point whose
small improvement would add the most hypervolume (`gains`), divided by one plus the continuations
already started from it, so that the search spreads over the front instead of following one point
forever. New points of a chain start with no children, so a chain that keeps extending the front's
cheap end keeps being chosen: one long ramp, branching where the front needs it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from .config import StudyConfig
from .hypervolume import front_mask, in_box, resolve
from .points import BETA_ATTR, CONTINUES_ATTR, MODEL_ARTIFACT_ATTR, Origin, origin
from .space import ARCHITECTURE


@dataclass(frozen=True)
class Start:
    """A point a training can continue from."""

    point: int  # its trial number
    model_artifact: str
    beta: float | None  # beta when it was saved: the continuation's ramp goes on from there
    architecture: dict[str, Any]  # the Optuna parameters the continuation keeps


def start_of(t: FrozenTrial) -> Start | None:
    """The point as a start, if it can be one: a COMPLETE training or harvested epoch with a stored model."""
    artifact = t.user_attrs.get(MODEL_ARTIFACT_ATTR)
    if t.state != TrialState.COMPLETE or origin(t) is Origin.IMPORT or artifact is None:
        return None
    info = t.user_attrs.get("info", {})
    beta = t.user_attrs.get(BETA_ATTR) if origin(t) is not Origin.TRAINING else info.get("final_beta")
    if beta is None:
        beta = (t.user_attrs.get("params") or {}).get("beta")
    return Start(t.number, artifact, beta, {k: v for k, v in t.params.items() if k in ARCHITECTURE})


def gains(points: list[FrozenTrial], cfg: StudyConfig, step: float = 0.05) -> dict[int, float]:
    """For each front point, the hypervolume the front would gain if that point improved a little: by
    `step` of the distance between the front's best value and the reference, in every metric of the
    report's hypervolume space (validation values; counts in log10). Unlike a point's exclusive
    contribution, this values the ends of the front, where a cheaper or more accurate model is all gain."""
    import moocore

    frame = pd.DataFrame([{**t.user_attrs.get("metrics", {}), "trial": t.number} for t in points])
    scale = resolve(cfg.study, cfg.report.hypervolume, frame)
    if frame.empty or not all(m in frame for m in scale.metrics):
        return {}
    frame = frame.dropna(subset=list(scale.metrics))
    v = scale.transform(frame[list(scale.metrics)].to_numpy(dtype=float))
    ref = scale.transform(np.array([scale.reference]))[0]
    mx = np.array(scale.maximise)
    sign = np.where(mx, 1.0, -1.0)  # the direction of better, per metric
    # a reference that defaulted to the worst value seen would give the points on it no volume at all:
    # there, the box reaches a tenth of the range beyond it (or one unit, when every point ties)
    span = np.ptp(v, axis=0)
    margin = -sign * np.where(span > 0, 0.1 * span, 1.0)
    ref = ref + np.array([margin[i] if m in scale.defaulted else 0.0 for i, m in enumerate(scale.metrics)])
    inside = in_box(v, ref, scale.maximise)
    v, numbers = v[inside], frame["trial"].to_numpy()[inside]
    if not len(v):
        return {}
    on_front = front_mask(v, scale.maximise)
    v, numbers = v[on_front], numbers[on_front]
    best = np.where(mx, v.max(axis=0), v.min(axis=0))
    delta = sign * step * np.abs(best - ref)
    base = moocore.hypervolume(v, ref=ref, maximise=list(mx))
    out = {}
    for n, row in zip(numbers.tolist(), v, strict=True):
        out[n] = float(moocore.hypervolume(np.vstack([v, row + delta]), ref=ref, maximise=list(mx)) - base)
    return out


def choose(trials: list[FrozenTrial], cfg: StudyConfig, rng: np.random.Generator) -> Start | None:
    """The start of the next training, or None for a fresh one."""
    policy = cfg.training.continuation
    alive = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)]
    started = sum(origin(t) is Origin.TRAINING for t in alive)
    if policy.share <= 0 or started < policy.startup or rng.random() >= policy.share:
        return None
    starts = {s.point: s for t in trials if (s := start_of(t)) is not None}
    feasible = [t for t in trials if t.number in starts and all(c <= 0 for c in t.constraints.values())]
    gain = gains(feasible, cfg)
    children = Counter(t.user_attrs.get(CONTINUES_ATTR) for t in alive if origin(t) is Origin.TRAINING)
    scored = {n: g / (1 + children[n]) for n, g in gain.items() if g > 0}
    if not scored:
        return None
    return starts[max(scored, key=lambda n: (scored[n], -n))]
