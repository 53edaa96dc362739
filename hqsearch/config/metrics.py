"""What a study can measure: one registry for config validation, `--sort`, the report and the docs.

Each metric says which backends produce it, so a config that asks a backend for a number it never
reports is refused before a trial runs. Test-split metrics are recorded for every trial and shown
beside the front, but cannot be objectives or constraints: choosing on the test split would make
every front accuracy optimistic.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Direction(StrEnum):
    MAXIMIZE = "maximize"
    MINIMIZE = "minimize"


BACKENDS = ("estimate", "yosys", "vivado", "vitis", "vivado-rtl")
HLS = frozenset({"vivado", "vitis"})
EVERY = frozenset(BACKENDS)


@dataclass(frozen=True)
class Metric:
    name: str
    direction: Direction
    unit: str
    producers: frozenset[str]  # backends whose trials report it
    meaning: str
    selectable: bool = True  # may be an objective or a constraint
    shown: bool = False  # a column of the front table on screen (the files have every metric)
    log_scale: bool = False  # a resource count: fronts span decades, so hypervolume measures it in log10


MAX, MIN = Direction.MAXIMIZE, Direction.MINIMIZE
_ALL = [
    Metric(
        "accuracy",
        MAX,
        "fraction",
        EVERY,
        "firmware accuracy on the validation split: alkaid's bit-exact emulation (RTL backends) or "
        "hls4ml's C++ emulation (vivado, vitis)",
        shown=True,
    ),
    Metric(
        "test_accuracy",
        MAX,
        "fraction",
        EVERY,
        "the same firmware on the test split; reported beside the front, never used to choose",
        selectable=False,
        shown=True,
    ),
    Metric("float_accuracy", MAX, "fraction", EVERY, "the Keras model on the validation split"),
    Metric("test_float_accuracy", MAX, "fraction", EVERY, "the Keras model on the test split", selectable=False),
    Metric(
        "luts",
        MIN,
        "LUTs",
        EVERY,
        "LUTs from the backend (alkaid's estimate for `estimate`)",
        shown=True,
        log_scale=True,
    ),
    Metric("ffs", MIN, "flip-flops", EVERY, "flip-flops from the backend", shown=True, log_scale=True),
    Metric(
        "dsps", MIN, "DSP slices", EVERY, "DSP slices from the backend (0 for `estimate`)", shown=True, log_scale=True
    ),
    Metric(
        "latency_cycles",
        MIN,
        "cycles",
        EVERY,
        "latency: HLS worst case (vivado, vitis), else alkaid's pipeline stages",
        shown=True,
    ),
    Metric("latency_ns", MIN, "ns", EVERY, "latency_cycles × synthesis.clock_period"),
    Metric(
        "ebops", MIN, "EBOPs", EVERY, "HGQ's effective bit operations after `trace_minmax`", shown=True, log_scale=True
    ),
    Metric("estimated_luts", MIN, "LUTs", EVERY, "alkaid's cost model, whatever the backend", log_scale=True),
    Metric(
        "estimated_ffs", MIN, "flip-flops", EVERY, "alkaid's pipeline registers, whatever the backend", log_scale=True
    ),
    Metric("brams", MIN, "18 Kb blocks", HLS | {"vivado-rtl"}, "block RAMs in 18 Kb units", log_scale=True),
    Metric("ii", MIN, "cycles", HLS, "initiation interval (HLS report)"),
    Metric(
        "estimated_clock_ns",
        MIN,
        "ns",
        HLS | {"vivado-rtl"},
        "achieved clock period: the HLS estimate, or Vivado's clock period minus WNS",
    ),
]
METRICS: dict[str, Metric] = {m.name: m for m in _ALL}


def lookup(name: str) -> Metric:
    """The metric of that name; a `KeyError` whose message lists the known ones."""
    try:
        return METRICS[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(METRICS)}") from None


def selectable(name: str) -> Metric:
    """A metric that may be an objective or constraint; `ValueError` with the reason otherwise."""
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; choose from {', '.join(m.name for m in _ALL if m.selectable)}")
    metric = METRICS[name]
    if not metric.selectable:
        raise ValueError(
            f"{name!r} is measured on the test split, which is reported and never used to choose; "
            f"use {name.removeprefix('test_')!r} (the validation split)"
        )
    return metric


def not_produced(name: str, backend: str) -> str | None:
    """Why `backend` cannot give `name`, or None when it does."""
    metric = METRICS[name]
    if backend in metric.producers:
        return None
    by = ", ".join(b for b in BACKENDS if b in metric.producers)
    return f"backend {backend!r} does not produce {name!r} (produced by: {by})"


def unusable(metrics: dict[str, float], needed: list[str], backend: str) -> str | None:
    """Why an outcome cannot be a COMPLETE point: a metric the study needs is absent or not a number."""
    import math

    bad = [m for m in needed if not isinstance(metrics.get(m), int | float) or not math.isfinite(metrics[m])]
    if not bad:
        return None
    got = ", ".join(f"{m}={metrics[m]}" for m in bad if m in metrics)
    return (
        f"backend {backend!r} reported no usable {', '.join(bad)}"
        + (f" ({got})" if got else "")
        + f"; the study needs them (reported: {', '.join(metrics) or 'nothing'})"
    )


def markdown_table() -> str:
    """The metric table of docs/config.md, generated here so the docs cannot drift from the code."""
    rows = ["| metric | better | unit | backends | meaning |", "|---|---|---|---|---|"]
    for m in _ALL:
        backends = "all" if m.producers == EVERY else ", ".join(f"`{b}`" for b in BACKENDS if b in m.producers)
        better = "higher" if m.direction is Direction.MAXIMIZE else "lower"
        note = "" if m.selectable else " (report only)"
        rows.append(f"| `{m.name}`{note} | {better} | {m.unit} | {backends} | {m.meaning} |")
    return "\n".join(rows)
