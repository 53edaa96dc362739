"""The search space: what one Optuna trial samples, and the plain values a trial then runs with.

Parameters that allow 0 next to a log range get a boolean switch (`beta_on`), so the dashboard shows
the range itself in log scale and TPE learns "off" as its own choice.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import optuna

from .config import FloatRange, IntRange, StudyConfig


@dataclass(frozen=True)
class TrialParams:
    """Everything that differs between trials of one study."""

    beta: float
    l1: float
    l2: float
    weights: str  # intra | inter | per_channel
    activations: str  # intra | inter
    learning_rate: float
    widths: tuple[int, ...]
    init_weight_bits: int | None = None
    init_act_bits: int | None = None
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"] = list(self.widths)
        d["notes"] = list(self.notes)
        return d


def _float(trial: optuna.Trial, name: str, spec: FloatRange | float) -> float:
    if not isinstance(spec, FloatRange):
        return float(spec)
    if spec.allow_zero and not trial.suggest_categorical(f"{name}_on", [True, False]):
        return 0.0
    if spec.low == spec.high:
        return spec.low
    return trial.suggest_float(name, spec.low, spec.high, log=spec.log)


def _int(trial: optuna.Trial, name: str, spec: IntRange | int | None) -> int | None:
    if spec is None or isinstance(spec, int):
        return spec
    return trial.suggest_int(name, spec.low, spec.high)


def _choice(trial: optuna.Trial, name: str, choices: list):
    return choices[0] if len(choices) == 1 else trial.suggest_categorical(name, choices)


def suggest(trial: optuna.Trial, cfg: StudyConfig) -> TrialParams:
    space = cfg.search_space
    notes: list[str] = []
    weights = _choice(trial, "weights", list(space.heterogeneity.weights))
    activations = _choice(trial, "activations", list(space.heterogeneity.activations))

    inter_only = weights == "inter" and activations == "inter"
    if inter_only and cfg.synthesis.strategy == "resource" and space.zero_beta_for_inter_resource:
        beta = 0.0  # conditional space: beta is not sampled at all for this branch
        notes.append("beta fixed to 0: inter-layer heterogeneity with the resource strategy (HGQ rule 5)")
    else:
        beta = _float(trial, "beta", space.beta)

    if space.widths is None:
        widths = tuple(cfg.model.widths)
    else:
        labels = ["-".join(map(str, w)) for w in space.widths]
        widths = tuple(space.widths[labels.index(_choice(trial, "widths", labels))])

    lr = cfg.training.learning_rate if space.learning_rate is None else _float(trial, "lr", space.learning_rate)
    return TrialParams(
        beta=beta,
        l1=_float(trial, "l1", space.l1),
        l2=_float(trial, "l2", space.l2),
        weights=weights,
        activations=activations,
        learning_rate=lr,
        widths=widths,
        init_weight_bits=_int(trial, "init_weight_bits", space.init_weight_bits),
        init_act_bits=_int(trial, "init_act_bits", space.init_act_bits),
        notes=tuple(notes),
    )
