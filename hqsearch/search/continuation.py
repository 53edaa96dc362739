"""Where the next training starts: fresh, or from a stored checkpoint, ramped down through a gap in the front.

HGQ removes bits best along a long, slow ramp of beta, and a long ramp fills the front because it passes
through every cost slowly; trainings that jump leave gaps. After `startup` fresh trainings, a `share` of
the trainings (moved toward the kind, fresh or continued, that adds more hypervolume per epoch: see
`Starts.share`) continue a point of the study (a training's final model or a harvested epoch): the front
point above the gap that would add the most hypervolume if it were filled (`gains`: the box between a
point and its next cheaper neighbour on the front, in the hypervolume's own scale; at the cheap end, a
step beyond it), divided by one plus the continuations already started from it, so that the search
spreads over the front instead of following one point forever; a point is continued `MAX_TRIES`
times at most, and new points of a chain start afresh. The continuation ramps beta from its
point's value to the lowest beta at which a point of the same architecture was as cheap as the
neighbour (the top of the range where none was, and at the cheap end), over as many epochs
as the study's fresh ramps spend on that many decades of beta: the ramp moves the point down through
the gap, and harvest collects the epochs on the way. A point whose beta is at the top of the range has
no ramp left and is not continued.

A point that a continuation could not start from (its model is gone from the artifact store, its
architecture left the search space) is never chosen again: the failed trial carries `start_failed`,
so every driver that reads the study, now or after a restart, leaves that point out.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from hqsearch.config.schema import FloatRange, IntRange, StudyConfig
from hqsearch.search.front import Front, dominates, meets_constraints, nondominated, signed
from hqsearch.search.hypervolume import in_box, resolve
from hqsearch.search.space import ARCHITECTURE
from hqsearch.study.attrs import (
    BETA_ATTR,
    CONTINUES_ATTR,
    MEASURES_ATTR,
    MODEL_ARTIFACT_ATTR,
    PARENT_ATTR,
    START_FAILED_ATTR,
    info_of,
    metrics_of,
    params_of,
)
from hqsearch.study.points import Origin, origin

# continuations from one point at most: a gap that two ramps from its upper side did not fill is not
# filled from there (in the search_quality benchmark one point was tried nine times, 35 epochs each)
MAX_TRIES = 2


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
    info = info_of(t.user_attrs)
    beta = t.user_attrs.get(BETA_ATTR) if origin(t) is not Origin.TRAINING else info.get("final_beta")
    if beta is None:
        beta = params_of(t.user_attrs).get("beta")
    return Start(t.number, artifact, beta, {k: v for k, v in t.params.items() if k in ARCHITECTURE})


def gains(points: list[FrozenTrial], cfg: StudyConfig, step: float = 0.05) -> dict[int, float]:
    """For each front point, the hypervolume the front would gain if the gap below it were filled: by the
    corner of the box between the point and its next cheaper front neighbour (in the first cost of the
    report's hypervolume space; validation values, counts in log10), or, at the cheap end, by the point
    made cheaper by `step` of the distance between the front's best cost and the reference. Unlike a
    point's exclusive contribution, this values the empty stretches between the points."""
    return {n: g for n, (g, _) in _gains(_frame(points), cfg, step).items()}


def _frame(points: list[FrozenTrial]) -> pd.DataFrame:
    return pd.DataFrame([{**metrics_of(t.user_attrs), "trial": t.number} for t in points])


@dataclass(frozen=True)
class _Scaled:
    """Front points in the hypervolume's own space, with its reference."""

    v: np.ndarray
    numbers: np.ndarray
    ref: np.ndarray
    maximise: np.ndarray

    def volume(self) -> float:
        import moocore

        return float(moocore.hypervolume(self.v, ref=self.ref, maximise=list(self.maximise))) if len(self.v) else 0.0


def _scaled(frame: pd.DataFrame, cfg: StudyConfig) -> _Scaled | None:
    """The frame's front in the hypervolume's space (see `gains`); None where it lacks a metric."""
    scale = resolve(cfg.study, cfg.report.hypervolume, frame)
    if frame.empty or not all(m in frame for m in scale.metrics):
        return None
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
    on_front = nondominated(v, scale.maximise) if len(v) else np.zeros(0, dtype=bool)
    return _Scaled(v[on_front], numbers[on_front], ref, mx)


def _gains(frame: pd.DataFrame, cfg: StudyConfig, step: float) -> dict[int, tuple[float, int | None]]:
    """Per front point: (gain, the trial number of its next cheaper neighbour, None at the cheap end)."""
    import moocore

    scaled = _scaled(frame, cfg)
    if scaled is None or not len(scaled.v):
        return {}
    v, numbers, ref, mx = scaled.v, scaled.numbers, scaled.ref, scaled.maximise
    sign = np.where(mx, 1.0, -1.0)
    best = np.where(mx, v.max(axis=0), v.min(axis=0))
    cheaper_by_step = np.where(mx, 0.0, sign * step * np.abs(best - ref))  # costs only: same accuracy, cheaper
    costs = np.flatnonzero(~mx)
    base = scaled.volume()
    out: dict[int, tuple[float, int | None]] = {}
    for n, row in zip(numbers.tolist(), v, strict=True):
        below = None
        if len(costs):  # the nearest front point that is cheaper in the first cost
            c = costs[0]
            cheaper = np.flatnonzero(v[:, c] < row[c])
            if len(cheaper):
                below = int(cheaper[np.argmax(v[cheaper, c])])
        if below is None:
            corner = row + (cheaper_by_step if len(costs) else sign * step * np.abs(best - ref))
        else:  # the corner of the gap: this point's accuracy at its neighbour's cost
            corner = np.where(mx, np.maximum(row, v[below]), np.minimum(row, v[below]))
        gain = float(moocore.hypervolume(np.vstack([v, corner]), ref=ref, maximise=list(mx)) - base)
        out[n] = (gain, None if below is None else int(numbers[below]))
    return out


@dataclass(frozen=True)
class Plan:
    """A continuation: where it starts, and the parameters the gap gives it (the sampler fills in the rest)."""

    start: Start
    below: int | None  # the cheaper neighbour whose gap it ramps through; None at the cheap end
    params: dict[str, Any]  # Optuna parameters fixed for it: the architecture, and beta and epochs of its ramp


def ramp_through(cfg: StudyConfig, start: Start, toward: float | None) -> dict[str, Any]:
    """The ramp that moves `start` down through its gap: beta from the start's value to `toward` (a beta
    known to reach the gap's cheap side with this architecture; the top of the range where none is known),
    over the epochs the study's fresh ramps spend on as many decades of beta, within the epochs' search
    range. Empty where the space searches no beta range or the start has no beta."""
    space = cfg.search_space
    beta = space.beta
    if not isinstance(beta, FloatRange) or beta.low <= 0 or not start.beta or start.beta <= 0:
        return {}
    target = toward if toward is not None and start.beta < toward < beta.high else beta.high
    params: dict[str, Any] = {"beta": target, **({"beta_on": True} if beta.allow_zero else {})}
    if isinstance(space.epochs, IntRange):
        per_decade = (space.epochs.low + space.epochs.high) / 2 / max(np.log10(beta.high / beta.low), 1e-9)
        wanted = int(np.ceil(per_decade * np.log10(target / start.beta)))
        params["epochs"] = int(np.clip(wanted, space.epochs.low, space.epochs.high))
    return params


def _trainings(unfinished: list[FrozenTrial]) -> list[FrozenTrial]:
    """The trainings among unfinished trials: started, not yet counted in `Starts.started`."""
    return [t for t in unfinished if origin(t) is Origin.TRAINING]


class Starts:
    """What `choose` needs, kept one finished trial at a time, so a choice costs the front, not the study.

    Only a front point can gain, so the feasible starts are kept as their front (in the hypervolume's
    metrics) beside the worst value seen of each metric: the reference `resolve` defaults to. A start
    without every one of those metrics is never scored. A design told with its estimate counts with it
    until its measurement (`origin: synthesis`) replaces it: then the front is rebuilt without the
    estimate, and the continuations started from it count for the measured point.
    """

    def __init__(self, cfg: StudyConfig) -> None:
        self.cfg = cfg
        scale = resolve(cfg.study, cfg.report.hypervolume, pd.DataFrame())
        self.metrics, self.maximise = scale.metrics, scale.maximise
        self.front = Front(self.maximise)
        self.worst: np.ndarray | None = None  # per metric, in its own direction
        self.started = 0  # COMPLETE trainings
        self.children: Counter[int] = Counter()  # COMPLETE or FAILed trainings per continued point
        self.rows: dict[int, tuple[np.ndarray, Start, dict]] = {}  # every scored start, for a rebuild
        self.measured_as: dict[int, int] = {}  # a design told with its estimate -> the point measuring it
        self.failed: set[int] = set()  # points a continuation could not start from: never chosen again
        # what each kind of training after the startup spent and added to the front (see `share`)
        self.kind: dict[int, str] = {}  # training number -> "fresh" | "continued"
        self.spent: Counter[str] = Counter()  # epochs
        self.gained: Counter[str] = Counter()  # validation hypervolume its points added when they came

    def add(self, t: FrozenTrial) -> None:
        """A trial that just finished."""
        if t.state == TrialState.FAIL and (point := t.user_attrs.get(START_FAILED_ATTR)) is not None:
            self.start_failed(point)
        if t.state == TrialState.FAIL and (parent := t.user_attrs.get(CONTINUES_ATTR)) is not None:
            self.children[self.measured_as.get(parent, parent)] += 1  # a failed try is a try
        if t.state != TrialState.COMPLETE:
            return
        if origin(t) is Origin.TRAINING:
            continued = (parent := t.user_attrs.get(CONTINUES_ATTR)) is not None
            if continued:
                self.children[self.measured_as.get(parent, parent)] += 1
            if continued or self.started >= self.cfg.training.continuation.startup:
                kind = self.kind[t.number] = "continued" if continued else "fresh"
                self.spent[kind] += int(info_of(t.user_attrs).get("epochs", 0))
            self.started += 1
        if origin(t) is Origin.SYNTHESIS and (estimated := t.user_attrs.get(MEASURES_ATTR)) is not None:
            self._replace(estimated, t.number)
        start = start_of(t)
        if start is None or not meets_constraints(t.constraints, estimates=True):
            return
        metrics = metrics_of(t.user_attrs)
        row = np.array([metrics.get(m, np.nan) for m in self.metrics], dtype=float)
        if np.isnan(row).any():
            return
        self.rows[t.number] = (row, start, metrics)
        producer = t.user_attrs.get(PARENT_ATTR) if origin(t) is Origin.HARVEST else t.number
        kind = self.kind.get(producer)
        if kind is None or not self._adapts() or dominates(self.front.values, signed(row, self.maximise)).any():
            self._take(row, start, metrics)
            return
        before = self._volume(extra=row)  # with the reference as it will be once the point is in
        self._take(row, start, metrics)
        self.gained[kind] += max(0.0, self._volume() - before)

    def _take(self, row: np.ndarray, start: Start, metrics: dict) -> None:
        self.worst = self._worse(row)
        self.front.add(row, (start, metrics))

    def _worse(self, row: np.ndarray) -> np.ndarray:
        """The worst values seen, with `row` among them."""
        if self.worst is None:
            return row
        return np.where(np.array(self.maximise), np.minimum(self.worst, row), np.maximum(self.worst, row))

    def _frame(self, worst: np.ndarray) -> pd.DataFrame:
        """The front and a row of the worst values (dominated, or a tie): all `resolve` needs of the study."""
        rows = [{**metrics, "trial": start.point} for start, metrics in self.front.items]
        rows.append({**dict(zip(self.metrics, worst, strict=True)), "trial": -1})
        return pd.DataFrame(rows)

    def _volume(self, extra: np.ndarray | None = None) -> float:
        """The front's validation hypervolume, its reference taken as if `extra` had been seen too."""
        worst = self.worst if extra is None else self._worse(extra)
        if worst is None:
            return 0.0
        scaled = _scaled(self._frame(worst), self.cfg)
        return 0.0 if scaled is None else scaled.volume()

    def _adapts(self) -> bool:
        policy = self.cfg.training.continuation
        return policy.adapt and 0.0 < policy.share < 1.0

    def share(self) -> float:
        """The chance that a training after the startup continues a point: `continuation.share`, moved by how
        much hypervolume each kind of training (fresh, continued) has added per epoch since the startup,
        each rate shrunk toward the pooled one by two trainings' worth of epochs. Where continuations stop
        paying, fresh trainings (new architectures, new ramps) get the epochs, and back."""
        share = self.cfg.training.continuation.share
        spent, gained = sum(self.spent.values()), sum(self.gained.values())
        if not self._adapts() or spent <= 0 or gained <= 0:
            return share
        prior = 2 * self.cfg.training.epochs
        pooled = gained / spent
        rate = {k: (self.gained[k] + pooled * prior) / (self.spent[k] + prior) for k in ("fresh", "continued")}
        continued, fresh = share * rate["continued"], (1 - share) * rate["fresh"]
        return continued / (continued + fresh)

    def _replace(self, estimated: int, measured: int) -> None:
        """A measurement replaces the estimate it was told with: the front is rebuilt without it."""
        self.measured_as[estimated] = measured
        self.children[measured] += self.children.pop(estimated, 0)
        if self.rows.pop(estimated, None) is None:
            return
        self.front, self.worst = Front(self.maximise), None
        for row, start, metrics in self.rows.values():
            self._take(row, start, metrics)

    def start_failed(self, point: int) -> None:
        """A continuation of `point` could not start: the point is not chosen again."""
        self.failed.add(point)

    def gains(self, step: float = 0.05) -> dict[int, float]:
        """`gains` of every feasible start, from the front and a row of the worst values alone."""
        return {n: g for n, (g, _) in self._gains(step).items()}

    def _gains(self, step: float = 0.05) -> dict[int, tuple[float, int | None]]:
        if self.worst is None:
            return {}
        out = _gains(self._frame(self.worst), self.cfg, step)
        out.pop(-1, None)
        return out

    def choose(self, unfinished: list[FrozenTrial], rng: np.random.Generator) -> Plan | None:
        """The next training's continuation, or None for a fresh one; `unfinished`: the RUNNING and WAITING trials."""
        policy = self.cfg.training.continuation
        running = _trainings(unfinished)
        if policy.share <= 0 or self.started + len(running) < policy.startup or rng.random() >= self.share():
            return None
        gain = self._gains()
        continued = (t.user_attrs.get(CONTINUES_ATTR) for t in running)
        children = self.children + Counter(self.measured_as.get(n, n) for n in continued)
        # a measurement continues from the model of the estimate it replaced: that model's failure is its own
        failed = self.failed | {self.measured_as[n] for n in self.failed if n in self.measured_as}
        starts = {start.point: start for start, _ in self.front.items}
        open_ = {n for n in gain if n not in failed and children[n] < MAX_TRIES and self._can_ramp(starts[n])}
        scored = {n: g / (1 + children[n]) for n, (g, _) in gain.items() if g > 0 and n in open_}
        if not scored:
            return None
        n = max(scored, key=lambda n: (scored[n], -n))
        below = gain[n][1] if gain[n][1] in starts else None  # not the row of worst values
        toward = self._beta_toward(starts[n], self.rows[below][0]) if below is not None else None
        return Plan(starts[n], below, {**starts[n].architecture, **ramp_through(self.cfg, starts[n], toward)})

    def opens(self, unfinished: list[FrozenTrial]) -> bool:
        """Whether the next training is one of the study's opening ramps (`search_space.ramp.opening`)."""
        return self.started + len(_trainings(unfinished)) < self.cfg.search_space.ramp.opening

    def _can_ramp(self, start: Start) -> bool:
        """Whether a continuation can raise the start's beta: not when it is at the top of the range already
        (holding it there only adds another point at the cheap end)."""
        beta = self.cfg.search_space.beta
        return not (isinstance(beta, FloatRange) and start.beta is not None and start.beta >= beta.high)

    def _beta_toward(self, start: Start, below: np.ndarray) -> float | None:
        """The lowest beta at which a point of the start's architecture was already as cheap as `below` (in
        the first cost): where the start's ramp may end to cross the gap. None where no such point is known:
        another architecture's beta says little about this one's cost."""
        costs = [i for i, mx in enumerate(self.maximise) if not mx]
        if not costs:
            return None
        c = costs[0]
        known = [
            s.beta
            for row, s, _ in self.rows.values()
            if s.architecture == start.architecture
            and s.beta
            and start.beta
            and s.beta > start.beta
            and row[c] <= below[c]
        ]
        return min(known, default=None)


def choose(trials: list[FrozenTrial], cfg: StudyConfig, rng: np.random.Generator) -> Plan | None:
    """The next training's continuation, or None for a fresh one."""
    starts = Starts(cfg)
    for t in trials:
        starts.add(t)
    return starts.choose([t for t in trials if not t.state.is_finished()], rng)
