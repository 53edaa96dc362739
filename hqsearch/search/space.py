"""The search space: what one Optuna trial samples, and the plain values a trial then runs with.

Parameters that allow 0 next to a log range get a boolean switch (`beta_on`), so the dashboard shows
the range itself in log scale and TPE learns "off" as its own choice.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import optuna

from hqsearch.config.schema import HLS4ML_SETTINGS, FloatRange, IntRange, StudyConfig, hls4ml_choices


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
    epochs: int | None = None  # None: training.epochs
    beta_start: float | None = None  # where the `ramp` schedule starts; None: beta from the first epoch
    hold: int = 0  # epochs at beta_start before the ramp
    # hls4ml settings the search chose (vivado, vitis); None: the synthesis section's
    strategy: str | None = None
    reuse_factor: int | None = None
    io_type: str | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def hls4ml(self) -> dict:
        """The hls4ml settings this trial chose, as `synthesis` section fields."""
        return hls4ml_settings(asdict(self))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"] = list(self.widths)
        d["notes"] = list(self.notes)
        return d


def hls4ml_settings(params: dict) -> dict:
    """The hls4ml settings a trial chose (from its parameters, or its `params` user attribute), as
    `synthesis` section fields; empty where the search space does not search them."""
    return {k: params[k] for k in HLS4ML_SETTINGS if params.get(k) is not None}


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


# what a continuation keeps from its checkpoint: the parameters that shape the network's variables
ARCHITECTURE = ("weights", "activations", "widths", "init_weight_bits", "init_act_bits")


def _ramp_start(trial: optuna.Trial, cfg: StudyConfig, beta: float, start_from: float | None) -> float | None:
    """A continuation starts where its checkpoint's beta was; a fresh training `ramp.start` of the way
    from the bottom of the study's beta range to its own beta, on the log scale."""
    if beta <= 0:
        return None
    if start_from is not None and start_from > 0:
        return min(start_from, beta)
    space = cfg.search_space
    f = _float(trial, "ramp_start", space.ramp.start)
    low = space.beta.low if isinstance(space.beta, FloatRange) and space.beta.low > 0 else beta
    return low * (beta / low) ** f if low < beta else beta


def _hls4ml(trial: optuna.Trial, cfg: StudyConfig, inter_only: bool, activations: str, notes: list[str]) -> dict:
    """The trial's hls4ml settings where the search space names them, chosen within HGQ's rules: the resource
    strategy for inter-layer-only heterogeneity and for nothing else (rule 5); reuse factor 1 for
    distributed arithmetic; io_stream only with inter-layer activations (hls4ml streams one bitwidth per
    tensor). Each rule fixes a setting instead of sampling it, so every sampled parameter keeps one set
    of choices across trials."""
    space = cfg.search_space.hls4ml
    if space.strategy is None and space.reuse_factor is None and space.io_type is None:
        return {}
    choices = hls4ml_choices(cfg)
    strategies = choices["strategy"]
    if len(strategies) > 1:  # config validation made sure each branch has one
        strategies = ["resource"] if inter_only else [s for s in strategies if s != "resource"]
    strategy = _choice(trial, "strategy", strategies)
    if strategy == "distributed_arithmetic":
        reuse = 1
        if choices["reuse_factor"] != [1]:
            notes.append("reuse_factor 1: distributed_arithmetic runs fully parallel in hls4ml")
    else:
        reuse = _choice(trial, "reuse_factor", choices["reuse_factor"])
    io_types = choices["io_type"]
    if activations != "inter" and len(io_types) > 1:
        io_types = ["io_parallel"]
        notes.append("io_parallel: hls4ml streams (io_stream) only inter-layer activations")
    return {"strategy": strategy, "reuse_factor": reuse, "io_type": _choice(trial, "io_type", io_types)}


def _epochs(trial: optuna.Trial, cfg: StudyConfig, max_epochs: int | None, notes: list[str]) -> int:
    """The training's length. Where the epoch budget has less left than the searched range's top, it is
    sampled up to what is left (or is what is left, below the range), so that the trial's `epochs` is
    the length that ran, for the sampler and the dashboard alike."""
    spec = cfg.search_space.epochs
    longest = spec.high if isinstance(spec, IntRange) else spec or cfg.training.epochs
    if max_epochs is None or longest <= max_epochs:
        return _int(trial, "epochs", spec) or longest
    notes.append(f"epochs at most {max_epochs}: what the epoch budget had left")
    if not isinstance(spec, IntRange):  # a fixed length: what is left
        return max_epochs
    return trial.suggest_int("epochs", min(spec.low, max_epochs), max_epochs)


def opening_ramp(cfg: StudyConfig) -> dict[str, Any]:
    """The Optuna parameters an opening training fixes: the HGQ authors' ramp at the longest length searched,
    from the lowest start the space allows (`beta.low` by default) held for 1/16 of the epochs, up to
    `beta.high`. It passes slowly through every cost, so its harvested epochs span the front before the
    search narrows, which randomly drawn first trainings leave to chance. The network (widths,
    heterogeneity) and L1/L2 the sampler chooses: fixed to the widest network, as the authors train, the
    short ramp ended far below the front in the search-quality benchmark, and every later training
    copied its architecture. Empty where the trainings do not ramp over a beta range."""
    space = cfg.search_space
    beta, ramp = space.beta, space.ramp
    if cfg.training.beta_schedule != "ramp" or not isinstance(beta, FloatRange) or beta.low <= 0:
        return {}
    params: dict[str, Any] = {"beta": beta.high, **({"beta_on": True} if beta.allow_zero else {})}
    if isinstance(ramp.start, FloatRange) and ramp.start.low < ramp.start.high:
        params["ramp_start"] = ramp.start.low
    if isinstance(ramp.hold, FloatRange) and ramp.hold.low < ramp.hold.high:
        params["ramp_hold"] = min(max(1 / 16, ramp.hold.low), ramp.hold.high)
    if isinstance(space.epochs, IntRange):
        params["epochs"] = space.epochs.high
    return params


def suggest(
    trial: optuna.Trial, cfg: StudyConfig, start_beta: float | None = None, max_epochs: int | None = None
) -> TrialParams:
    """The trial's parameters. A continuation passes its checkpoint's beta as `start_beta`: its ramp goes on
    from there, never down. `max_epochs` (what the epoch budget has left) caps the training's length."""
    space = cfg.search_space
    notes: list[str] = []
    weights = _choice(trial, "weights", list(space.heterogeneity.weights))
    activations = _choice(trial, "activations", list(space.heterogeneity.activations))

    inter_only = weights == "inter" and activations == "inter"
    hls = _hls4ml(trial, cfg, inter_only, activations, notes)
    strategy = hls.get("strategy", cfg.synthesis.strategy)
    if inter_only and strategy == "resource" and space.zero_beta_for_inter_resource:
        beta = 0.0  # conditional space: beta is not sampled at all for this branch
        notes.append("beta fixed to 0: inter-layer heterogeneity with the resource strategy (HGQ rule 5)")
    else:  # a continuation's beta is fixed by the driver (`continuation.ramp_through`), in the same range
        beta = _float(trial, "beta", space.beta)

    if space.widths is None:
        widths = tuple(cfg.model.widths)
    else:
        labels = ["-".join(map(str, w)) for w in space.widths]
        widths = tuple(space.widths[labels.index(_choice(trial, "widths", labels))])

    lr = cfg.training.learning_rate if space.learning_rate is None else _float(trial, "lr", space.learning_rate)
    epochs = _epochs(trial, cfg, max_epochs, notes)
    if start_beta is not None and beta < start_beta:  # a continuation ramps on or holds
        notes.append(f"beta held at the checkpoint's {start_beta:.3g}, above the {beta:.3g} sampled")
        beta = start_beta
    start = _ramp_start(trial, cfg, beta, start_beta) if cfg.training.beta_schedule == "ramp" else None
    hold = int(round(_float(trial, "ramp_hold", space.ramp.hold) * epochs)) if start is not None else 0
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
        epochs=epochs,
        beta_start=start,
        hold=min(hold, epochs - 1),
        **hls,
        notes=tuple(notes),
    )
