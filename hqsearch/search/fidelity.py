"""Multi-fidelity synthesis: the expensive backend measures only the designs that could reach the measured front.

Every design gets alkaid's estimate the moment it exists (it costs milliseconds). The study's measured
designs give, per synthesised metric, a least-squares line of measured against estimated numbers in
log(1 + x), where resource counts are multiplicative, and its prediction interval: the coverage of
±`synthesis.fidelity_margin` normal standard deviations, from Student's t on the line's degrees of
freedom, so a line from few designs is wide. A design cannot reach the measured front when even the
optimistic end of its interval is dominated by a measured, feasible point, or no value in it meets a
constraint; it is then not synthesised.

Where the search chooses hls4ml's strategy, reuse factor or I/O type, each combination is a design
family with lines of its own: the estimate does not change with them, the measurement does.

A design that could reach the front is measured at once only while the lines are being learned (until
`synthesis.fidelity_after` designs of its family are measured). After that it is deferred: while the search goes on,
the front moves, and most of today's front is dominated by tomorrow's designs. Once the study's
trainings are done, the driver measures the deferred designs that can still reach the front, one
judgment per measurement, those whose measurement rules the most others out first (`Gate.order`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from hqsearch.config.metrics import Direction
from hqsearch.config.schema import Constraint, StudyConfig
from hqsearch.search.front import dominates, is_skipped, signed
from hqsearch.study.attrs import ESTIMATE_KEY, FAMILY_KEY, info_of, metrics_of

if TYPE_CHECKING:  # the gate itself travels to workers that need no Optuna
    from optuna.trial import FrozenTrial

# What synthesis does not change: the firmware emulation, the Keras model, the calibrated EBOPs, the estimate
NOT_SYNTHESISED = frozenset(
    {"accuracy", "float_accuracy", "test_accuracy", "test_float_accuracy", "ebops", "estimated_luts", "estimated_ffs"}
)
DEFERRED = "deferred: it could reach the measured front; measured once the study's trainings are done, if it still can"


@dataclass(frozen=True)
class Line:
    """log(1 + measured) ≈ a + b · log(1 + estimate), with its residual spread `s` on `dof` degrees of freedom."""

    a: float
    b: float
    s: float
    n: int
    dof: int
    x_mean: float
    sxx: float

    def interval(self, estimate: float, margin: float) -> tuple[float, float]:
        """Where a measurement of a design with this estimate could land: the prediction interval with the
        coverage of ±`margin` normal standard deviations, Student's t on the line's degrees of freedom
        (so a line fitted to few designs gives a wide interval)."""
        from scipy import stats

        x = math.log1p(max(estimate, 0.0))
        spread = self.s * math.sqrt(1 + 1 / self.n + ((x - self.x_mean) ** 2 / self.sxx if self.sxx > 0 else 0.0))
        k = float(stats.t.ppf(stats.norm.cdf(margin), self.dof))
        y = self.a + self.b * x
        return max(_expm1(y - k * spread), 0.0), _expm1(y + k * spread)


def fit_line(pairs: list[tuple[float, float]]) -> Line:
    """The least-squares line through (estimate, measured) pairs in log(1 + x); a constant where the
    estimate never varies (e.g. DSPs, which distributed arithmetic never uses)."""
    x = np.log1p(np.maximum([p[0] for p in pairs], 0.0))
    y = np.log1p(np.maximum([p[1] for p in pairs], 0.0))
    n, x_mean = len(x), float(x.mean())
    sxx = float(((x - x_mean) ** 2).sum())
    if sxx > 0 and n > 2:
        b = float(((x - x_mean) * (y - y.mean())).sum() / sxx)
        a, dof = float(y.mean() - b * x_mean), n - 2
    else:
        a, b, dof, sxx = float(y.mean()), 0.0, max(n - 1, 1), 0.0
    residuals = y - (a + b * x)
    return Line(a, b, float(math.sqrt((residuals**2).sum() / dof)), n, dof, x_mean, sxx)


@dataclass
class Gate:
    """What one decision needs, picklable so it travels with a job to wherever synthesis runs."""

    objectives: dict[str, Direction]  # in config order
    constraints: list[Constraint]
    needed: list[str]  # objectives and constrained metrics
    margin: float
    after: int
    pairs: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # metric -> (estimate, measured)
    front: list[tuple[list[float], str]] = field(default_factory=list)  # measured feasible points, labelled
    counts: dict[str, int] = field(default_factory=dict)  # designs measured with an estimate, per family
    _lines: dict[str, Line] = field(default_factory=dict, repr=False)  # fitted on demand, dropped by `add`

    @property
    def measured(self) -> int:
        """Designs measured with an estimate beside them."""
        return sum(self.counts.values())

    def add(self, metrics: dict[str, float], estimate: dict | None, label: str) -> None:
        """A measured design: its numbers join its family's lines, and the front when it is feasible."""
        if estimate:
            family = _family(estimate)
            self.counts[family] = self.counts.get(family, 0) + 1
            for m, est in estimate.items():
                if m in metrics and _finite(est) and _finite(metrics[m]):
                    self.pairs.setdefault(_line_key(m, family), []).append((float(est), float(metrics[m])))
            self._lines.clear()
        if all(_finite(metrics.get(m)) for m in self.needed) and all(c.value(metrics) <= 0 for c in self.constraints):
            self.front.append(([float(metrics[m]) for m in self.objectives], label))

    def bounds(self, metrics: dict[str, float], estimate: dict[str, float]) -> tuple[dict, dict] | None:
        """The design's metrics at the optimistic and the pessimistic end of their prediction intervals
        (exact where synthesis does not change them); None while there are too few measurements."""
        family = _family(estimate)
        if self.counts.get(family, 0) < self.after:
            return None
        low, high = dict(metrics), dict(metrics)
        for m in self.needed:
            key = _line_key(m, family)
            if m in NOT_SYNTHESISED:
                if not _finite(metrics.get(m)):
                    return None
            elif m in estimate and len(self.pairs.get(key, ())) >= 3:  # a line with a spread
                if key not in self._lines:
                    self._lines[key] = fit_line(self.pairs[key])
                lo, hi = self._lines[key].interval(estimate[m], self.margin)
                low[m], high[m] = min(lo, estimate[m]), max(hi, estimate[m])
            else:  # nothing predicts it (BRAMs, II, the HLS clock): it could be anything
                low[m], high[m] = 0.0, math.inf
        return low, high

    @property
    def _maximise(self) -> list[bool]:
        return [d == Direction.MAXIMIZE for d in self.objectives.values()]

    def _best(self, low: dict, high: dict) -> np.ndarray:
        """The objective vector at the good end of each interval, signed so that larger is better."""
        return signed(
            [high[m] if d == Direction.MAXIMIZE else low[m] for m, d in self.objectives.items()], self._maximise
        )

    def _worst(self, low: dict, high: dict) -> np.ndarray:
        return signed(
            [low[m] if d == Direction.MAXIMIZE else high[m] for m, d in self.objectives.items()], self._maximise
        )

    def unpredicted(self, estimate: dict[str, float]) -> list[str]:
        """The metrics the study needs that only the backend can give (BRAMs, II, the HLS clock): neither
        unchanged by synthesis nor in the estimate. A design is never told without them."""
        return [m for m in self.needed if m not in NOT_SYNTHESISED and m not in estimate]

    def verdict(self, metrics: dict[str, float], estimate: dict[str, float]) -> str | None:
        """Why this design cannot reach the measured front, or None when it could (or it is too early to say)."""
        if (b := self.bounds(metrics, estimate)) is None:
            return None
        low, high = b
        for c in self.constraints:
            if c.value(low) > 0 and c.value(high) > 0:
                return f"cannot meet {c.metric} {c.op} {c.bound:g}"
        if not self.front:
            return None
        front = signed([values for values, _ in self.front], self._maximise)
        dominating = np.flatnonzero(dominates(front, self._best(low, high)))
        return f"dominated by the measured front ({self.front[dominating[0]][1]})" if len(dominating) else None

    def decide(self, metrics: dict[str, float], estimate: dict[str, float]) -> str | None:
        """What a training's synthesis stage does with a design: None to measure it now (while the lines
        are being learned, or when the study needs a metric only the backend gives), else why not: it
        cannot reach the measured front, or it is deferred."""
        if self.unpredicted(estimate):
            return None
        if (why := self.verdict(metrics, estimate)) is not None:
            return why
        return DEFERRED if self.counts.get(_family(estimate), 0) >= self.after else None

    def order(self, designs: list[tuple[dict[str, float], dict[str, float]]]) -> list[int]:
        """Deferred designs, most worth measuring first: those whose pessimistic numbers dominate the most
        others' optimistic ones (their measurement rules the most out), then the cheapest estimate."""
        bounds = [self.bounds(m, e) for m, e in designs]
        best = [self._best(*b) if b else None for b in bounds]
        worst = [self._worst(*b) if b else None for b in bounds]

        def rules_out(i: int) -> int:
            if worst[i] is None:
                return 0
            return sum(1 for j, b in enumerate(best) if j != i and b is not None and dominates(worst[i], b))

        return sorted(range(len(designs)), key=lambda i: (-rules_out(i), designs[i][1].get("luts", math.inf)))


def _expm1(x: float) -> float:
    """exp(x) - 1, infinite where it would overflow (a wide margin on a spread-out line)."""
    return math.inf if x > 709 else math.expm1(x)


def _family(estimate: dict) -> str:
    """The design family an estimate belongs to: its hls4ml settings, whose measurements follow lines of
    their own (the estimate is the same whatever the strategy); "" for the RTL backends."""
    return str(estimate.get(FAMILY_KEY) or "")


def _line_key(metric: str, family: str) -> str:
    return f"{metric} ({family})" if family else metric


def _finite(v: object) -> bool:
    return isinstance(v, int | float) and math.isfinite(v)


@dataclass(frozen=True)
class Syntheses:
    """What a study's synthesis backend did: `run` designs measured (`cached` of them answered by the
    design cache), `skipped` told with their estimate, `later` of those measured afterwards."""

    run: int = 0
    cached: int = 0
    skipped: int = 0
    later: int = 0

    def __str__(self) -> str:
        cached = f" ({self.cached} from the design cache)" if self.cached else ""
        return (
            f"syntheses: {self.run} run{cached}, {self.skipped} skipped (told with the alkaid estimate), "
            f"{self.later} of those run later"
        )


def syntheses(trials: Iterable[FrozenTrial]) -> Syntheses:
    from optuna.trial import TrialState

    from hqsearch.study.points import Origin, origin

    run = cached = skipped = later = 0
    for t in trials:
        if t.state != TrialState.COMPLETE:
            continue
        info = info_of(t.user_attrs)
        if is_skipped(t):
            skipped += 1
        elif (tool := info.get("synth_tool")) and "estimate" not in str(tool):  # a tool ran: no alkaid/da4ml estimate
            run += 1
            cached += bool(info.get("synth_cache_hit"))
        later += origin(t) is Origin.SYNTHESIS
    return Syntheses(run, cached, skipped, later)


def empty_gate(cfg: StudyConfig) -> Gate | None:
    """A gate that knows no measurement yet; None where every design is synthesised (`fidelity: all`, or
    the `estimate` backend, which has nothing more expensive to skip)."""
    syn = cfg.synthesis
    if syn.fidelity == "all" or syn.backend == "estimate":
        return None
    study = cfg.study
    return Gate(
        dict(study.objectives), list(study.constraints), study.needed_metrics, syn.fidelity_margin, syn.fidelity_after
    )


def gate(cfg: StudyConfig, trials: Iterable[FrozenTrial]) -> Gate | None:
    """The gate as the study stands: every COMPLETE point a backend measured."""
    from optuna.trial import TrialState

    g = empty_gate(cfg)
    if g is None:
        return None
    for t in trials:
        if t.state == TrialState.COMPLETE and not is_skipped(t):
            g.add(metrics_of(t.user_attrs), info_of(t.user_attrs).get(ESTIMATE_KEY), f"trial #{t.number}")
    return g
