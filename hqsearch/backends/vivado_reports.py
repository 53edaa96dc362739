"""Plain parsing of Vivado's text reports: `report_utilization` and `report_timing_summary`.

hls4ml's `parse_vivado_report` reads only `vivado_synth.rpt` at a fixed place and picks rows by section
number, so it cannot read alkaid's post-route reports; these parsers take any flat utilization report
(Vivado 2019-2024; 7-series "Slice LUTs" and UltraScale "CLB LUTs" rows; 2024's extra "Prohibited"
column) and any timing summary. The first row with a given label wins: later tables (SLR summaries)
repeat the labels with other numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from hqsearch.exceptions import ReportError

_VERSION = re.compile(r"Tool Version\s*:\s*Vivado v\.?(\d{4}\.\d+(?:\.\d+)?)")
_STATE = re.compile(r"^\|\s*Design State\s*:\s*(.+?)\s*$", re.MULTILINE)
# the labels of report_utilization rows -> our names; "Used" is always the first number column
_ROWS = {
    "luts": ("CLB LUTs", "Slice LUTs"),
    "ffs": ("CLB Registers", "Slice Registers"),
    "bram_tiles": ("Block RAM Tile",),
    "urams": ("URAM",),
    "dsps": ("DSPs",),
}


@dataclass(frozen=True)
class Utilization:
    luts: float
    ffs: float
    dsps: float
    bram_tiles: float  # 36 Kb tiles; a RAMB18 counts as 0.5
    urams: float
    version: str | None  # Vivado version from the report header
    state: str | None  # "Synthesized", "Fully Placed", "Routed", ...

    @property
    def brams_18k(self) -> float:
        """Block RAM in 18 Kb units, the unit of HLS's BRAM_18K estimate (one 36 Kb tile = two)."""
        return 2 * self.bram_tiles


@dataclass(frozen=True)
class TimingSummary:
    wns_ns: float | None  # worst negative slack of setup paths; None when nothing was constrained
    whs_ns: float | None
    clock_period_ns: float | None  # the first clock of the Clock Summary
    met: bool  # "All user specified timing constraints are met."
    version: str | None

    @property
    def achieved_period_ns(self) -> float | None:
        """The clock period the design would close at: target minus setup slack."""
        if self.wns_ns is None or self.clock_period_ns is None:
            return None
        return self.clock_period_ns - self.wns_ns


def _read(path: Path) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError as err:
        raise ReportError(f"{path}: cannot read the report ({err.strerror})") from None


def report_version(text: str) -> str | None:
    m = _VERSION.search(text)
    return m[1] if m else None


def _table_value(text: str, label: str) -> float | None:
    """The "Used" number of the first table row whose label is `label` (optionally with a '*')."""
    m = re.search(rf"^\|\s*{re.escape(label)}\*?\s*\|\s*([0-9.]+)\s*\|", text, re.MULTILINE)
    return float(m[1]) if m else None


def parse_utilization(path: Path) -> Utilization:
    text = _read(path)
    values: dict[str, float] = {}
    for key, labels in _ROWS.items():
        for label in labels:
            v = _table_value(text, label)
            if v is not None:
                values[key] = v
                break
    missing = [k for k in ("luts", "ffs") if k not in values]
    if missing:
        raise ReportError(f"{path}: no {' / '.join(_ROWS[missing[0]])} row; not a complete utilization report")
    state = _STATE.search(text)
    return Utilization(
        luts=values["luts"],
        ffs=values["ffs"],
        dsps=values.get("dsps", 0.0),
        bram_tiles=values.get("bram_tiles", 0.0),
        urams=values.get("urams", 0.0),
        version=report_version(text),
        state=state[1] if state else None,
    )


def _float(s: str) -> float | None:
    try:
        return float(s)
    except ValueError:  # "NA", "inf" for unconstrained designs
        return None


def parse_timing_summary(path: Path) -> TimingSummary:
    text = _read(path)
    m = re.search(r"\|\s*Design Timing Summary.*?^\s*WNS\(ns\).*?\n\s*-+[ -]*\n(.*?)$", text, re.S | re.M)
    if not m:
        raise ReportError(f"{path}: no Design Timing Summary table; not a complete timing summary report")
    cols = m[1].split()
    # WNS TNS failing total WHS THS failing total WPWS TPWS failing total
    if len(cols) < 5:
        raise ReportError(f"{path}: the Design Timing Summary row has {len(cols)} columns, expected 12")
    clock = re.search(
        r"\|\s*Clock Summary.*?^Clock\s+Waveform\(ns\)\s+Period\(ns\).*?\n-+[ -]*\n(\S+)\s+\{[^}]*\}\s+([0-9.]+)",
        text,
        re.S | re.M,
    )
    return TimingSummary(
        wns_ns=_float(cols[0]),
        whs_ns=_float(cols[4]),
        clock_period_ns=float(clock[2]) if clock else None,
        met="All user specified timing constraints are met" in text,
        version=report_version(text),
    )
