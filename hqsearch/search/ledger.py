"""What the driver knows of its study, kept up to date one changed trial at a time.

Optuna's cached storage hands the driver the study's trials cheaply, but anything computed over all of
them on every tell (`best_trials`, the count of trainings, the fidelity gate, the continuation's
choice) makes the driver's cost per trial grow with the study. The ledger looks at each trial once when
it finishes, and at the few unfinished ones every time: the cost of a refresh is the number of trials
that changed or still run, however long the study. Peers' trials (other drivers on the same study) are
counted alike, as they finish.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from optuna.trial import FrozenTrial, TrialState

from hqsearch.config.schema import StudyConfig
from hqsearch.search.continuation import Starts
from hqsearch.search.fidelity import Gate, empty_gate
from hqsearch.search.front import Front, is_skipped, meets_constraints, stands
from hqsearch.search.stopping import Outlook, learn
from hqsearch.study.attrs import (
    CONTINUES_ATTR,
    CURVE_KEY,
    ESTIMATE_KEY,
    MEASURES_ATTR,
    MODEL_ARTIFACT_ATTR,
    info_of,
    metrics_of,
)
from hqsearch.study.points import Origin, origin


@dataclass
class Ledger:
    cfg: StudyConfig
    trainings: int = 0  # COMPLETE trainings
    epochs: int = 0  # spent by them
    unfinished: list[FrozenTrial] = field(default_factory=list)  # RUNNING and WAITING, as of the last refresh
    mine: list[FrozenTrial] = field(default_factory=list)  # trainings this driver asked for since then
    front: Front = field(init=False)  # the measured front (see `front`): `best_trials`
    gate: Gate | None = field(init=False)  # every measured design (see `fidelity`)
    starts: Starts = field(init=False)  # what a continuation may start from (see `continuation`)
    skipped: dict[int, FrozenTrial] = field(default_factory=dict)  # told with their estimate, with a model
    measured: set[int] = field(default_factory=set)  # skipped points a later synthesis measured
    trials: list[FrozenTrial] = field(default_factory=list)  # the study as of the last refresh, by number
    points: list[tuple[float, float]] = field(default_factory=list)  # feasible (val accuracy, EBOPs) as trained
    curves: dict[str, list[dict]] = field(default_factory=lambda: {"fresh": [], "continued": []})  # by kind

    def __post_init__(self) -> None:
        self.front = Front(self.cfg.study.maximise)
        self.gate = empty_gate(self.cfg)
        self.starts = Starts(self.cfg)

    def refresh(self, trials: list[FrozenTrial]) -> None:
        """Take in the study as it stands: `study.get_trials(deepcopy=False)`, ordered by number."""
        waiting = {t.number for t in self.unfinished}
        changed = [trials[n] for n in sorted(waiting)] + trials[len(self.trials) :]
        self.trials = trials
        self.unfinished, self.mine = [], []
        for t in changed:
            if t.state.is_finished():
                self._finished(t)
            else:
                self.unfinished.append(t)

    def asked(self, attrs: dict) -> None:
        """A training this driver just asked for, with its user attributes: counted until the next refresh
        finds it in the storage, so that one refresh serves a whole round of asks."""
        self.mine.append(FrozenTrial(-1, TrialState.RUNNING, None, None, None, {}, {}, attrs, {}, {}, None))

    def size(self) -> int:
        """Trials in the study, as far as this driver knows."""
        return len(self.trials) + len(self.mine)

    def pending(self) -> list[FrozenTrial]:
        """RUNNING and WAITING trials: every driver's, and this driver's asks since the last refresh."""
        return self.unfinished + self.mine

    def running(self) -> list[FrozenTrial]:
        """RUNNING trainings (not the trials that measure a deferred design, which spend no budget)."""
        return [t for t in self.pending() if t.state == TrialState.RUNNING and origin(t) is Origin.TRAINING]

    def outlook(self, continued: bool) -> Outlook | None:
        """What a training of this kind is told of the front and how far behind it may fall (see `stopping`)."""
        if not self.cfg.training.stopping.behind_front:
            return None
        kind = "continued" if continued else "fresh"
        return learn(self.points, self.curves[kind], kind, self.cfg.training.stopping.learn_from)

    def _finished(self, t: FrozenTrial) -> None:
        self.starts.add(t)
        if t.state != TrialState.COMPLETE:
            return
        attrs = t.user_attrs
        info = info_of(attrs)
        acc, ebops = info.get("val_accuracy"), info.get("training_ebops")
        if acc is not None and ebops is not None and meets_constraints(t.constraints, estimates=True):
            self.points.append((float(acc), float(ebops)))  # the front a training sees, in its own terms
        if origin(t) is Origin.TRAINING:
            self.trainings += 1
            self.epochs += int(info.get("epochs", 0))
            if (c := info.get(CURVE_KEY)) is not None:
                self.curves["continued" if CONTINUES_ATTR in attrs else "fresh"].append(c)
        if stands(t):
            self.front.add(t.values, t.number)
        if is_skipped(t):
            if attrs.get(MODEL_ARTIFACT_ATTR) is not None:  # something to rebuild it from
                self.skipped[t.number] = t
        elif self.gate is not None:
            self.gate.add(metrics_of(attrs), info_of(attrs).get(ESTIMATE_KEY), f"trial #{t.number}")
        if origin(t) is Origin.SYNTHESIS:
            self.measured.add(attrs.get(MEASURES_ATTR))
