"""Report files for a study: the ranked front (CSV, Parquet), every trial (CSV), an accuracy-vs-LUTs plot,
and the front's hypervolume with its history over trainings and epochs."""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import optuna
import pandas as pd
from pydantic import ValidationError

from hqsearch.analysis.pareto import objective_names, rank_front, trials_frame
from hqsearch.config.metrics import Direction
from hqsearch.config.schema import HypervolumeSpec, StudyConfig, StudySection
from hqsearch.search.fidelity import Syntheses, syntheses
from hqsearch.search.hypervolume import Scale, Score, complete, history, plot_history, resolve, score
from hqsearch.study.storage import study_config

ESTIMATORS = ("ebops", "estimated_luts")


@dataclass(frozen=True)
class Fit:
    """Measured LUTs ≈ ratio × estimator, a least-squares line through the origin."""

    x: str
    ratio: float
    r2: float
    n: int

    def __str__(self) -> str:
        return f"measured LUTs ≈ {self.ratio:.3g} × {self.x}  (R² {self.r2:.3f}, {self.n} trials)"


@dataclass(frozen=True)
class Report:
    front: pd.DataFrame
    trials: pd.DataFrame
    files: list[Path]
    fits: list[Fit]
    score: Score
    history: pd.DataFrame
    syntheses: Syntheses


def study_section(study: optuna.Study, cfg: StudyConfig | None) -> tuple[StudySection, HypervolumeSpec]:
    """What scoring needs from a config: the one given, else the one stored in the study, else the study's
    own objectives with the default hypervolume settings."""
    stored = study_config(study)
    if cfg is None and stored:
        with suppress(ValidationError):  # a config from another hqsearch version: fall back to the objectives
            cfg = StudyConfig.model_validate(stored)
    if cfg is not None:
        return cfg.study, cfg.report.hypervolume
    objectives = {m: Direction(d.name.lower()) for m, d in zip(objective_names(study), study.directions, strict=True)}
    return StudySection.model_construct(name=study.study_name, objectives=objectives, constraints=[]), HypervolumeSpec()


def scale_for(study: optuna.Study, trials: pd.DataFrame, cfg: StudyConfig | None = None) -> Scale:
    section, spec = study_section(study, cfg)
    return resolve(section, spec, complete(trials))


def measured(trials: pd.DataFrame) -> pd.DataFrame:
    """COMPLETE trials whose LUTs came from a synthesis tool, not from an estimate."""
    if trials.empty or "luts_source" not in trials or "luts" not in trials:
        return trials.iloc[0:0]
    done = trials[(trials["state"] == "COMPLETE") & trials["luts"].notna()]
    return done[~done["luts_source"].fillna("").str.contains("estimate")]


def estimate_fits(trials: pd.DataFrame) -> list[Fit]:
    """How well EBOPs and alkaid's estimate predict measured LUTs in this study (HGQ: #LUTs ≈ #EBOPs under
    io_parallel, latency strategy, reuse factor 1)."""
    done = measured(trials)
    fits = []
    for x in ESTIMATORS:
        if x not in done:
            continue
        d = done[[x, "luts"]].dropna()
        if len(d) < 2 or not (d[x] ** 2).sum():
            continue
        ratio = float((d[x] * d["luts"]).sum() / (d[x] ** 2).sum())
        ss_res = float(((d["luts"] - ratio * d[x]) ** 2).sum())
        ss_tot = float(((d["luts"] - d["luts"].mean()) ** 2).sum())
        fits.append(Fit(x, ratio, 1 - ss_res / ss_tot if ss_tot else float("nan"), len(d)))
    return fits


def plot_estimates(trials: pd.DataFrame, fits: list[Fit], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = measured(trials)
    fig, axes = plt.subplots(1, len(fits), figsize=(5.5 * len(fits), 4.5), dpi=120, squeeze=False)
    for ax, fit in zip(axes[0], fits, strict=True):
        ax.scatter(done[fit.x], done["luts"], s=24, color="tab:blue", alpha=0.7)
        hi = float(done[fit.x].max())
        ax.plot([0, hi], [0, fit.ratio * hi], color="tab:orange", lw=1, label=f"{fit.ratio:.3g} × {fit.x}")
        ax.plot([0, hi], [0, hi], color="tab:gray", lw=0.8, ls="--", label="1 : 1")
        ax.set_xlabel(fit.x)
        ax.set_ylabel(f"measured LUTs ({done['luts_source'].iloc[0]})")
        ax.set_title(f"R² = {fit.r2:.3f}, n = {fit.n}")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_front(trials: pd.DataFrame, front: pd.DataFrame, path: Path, x: str = "luts", y: str = "accuracy") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    done = trials[trials["state"] == "COMPLETE"] if "state" in trials else trials
    if x in done and y in done:
        rest = done[~done["trial"].isin(front.get("trial", []))]
        feasible = rest["feasible"].fillna(True).astype(bool) if "feasible" in rest else True
        estimated = rest["synthesised"].eq(False) if "synthesised" in rest else False
        measured = feasible & ~estimated
        ax.scatter(rest[x][measured], rest[y][measured], s=22, color="tab:gray", alpha=0.35, label="dominated")
        if (feasible & estimated).any():
            ax.scatter(
                rest[x][feasible & estimated],
                rest[y][feasible & estimated],
                s=22,
                facecolors="none",
                edgecolors="tab:gray",
                alpha=0.5,
                label="not synthesised (alkaid estimate)",
            )
        if (~feasible).any():
            ax.scatter(
                rest[x][~feasible],
                rest[y][~feasible],
                s=22,
                marker="x",
                color="tab:red",
                alpha=0.5,
                label="infeasible (constraints)",
            )
    if not front.empty and x in front and y in front:
        f = front.sort_values(x)
        # best accuracy reachable within x LUTs: the front as seen in this projection
        ax.step(f[x], f[y].cummax(), where="post", color="tab:blue", alpha=0.6, lw=1)
        ax.scatter(f[x], f[y], s=40, color="tab:blue", zorder=3, label="Pareto front")
        for _, r in f.iterrows():
            ax.annotate(f"#{int(r['trial'])}", (r[x], r[y]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    source = front["luts_source"].iloc[0] if "luts_source" in front and not front.empty else None
    ax.set_xlabel(f"{x} ({source})" if source and x == "luts" else x)
    ax.set_ylabel(f"{y} (firmware emulation, validation split)" if y == "accuracy" else y)
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_report(study: optuna.Study, out_dir: Path, sort: str | None = None, cfg: StudyConfig | None = None) -> Report:
    out_dir.mkdir(parents=True, exist_ok=True)
    front = rank_front(study, sort)
    trials = trials_frame(study)
    scale = scale_for(study, trials, cfg)
    hist = history(trials, scale) if not trials.empty else pd.DataFrame()
    files = [out_dir / "pareto.csv", out_dir / "pareto.parquet", out_dir / "trials.csv"]
    front.to_csv(files[0], index=False)
    front.to_parquet(files[1], index=False)
    trials.to_csv(files[2], index=False)
    files.append(plot_front(trials, front, out_dir / "pareto.png"))
    fits = estimate_fits(trials)
    if fits:
        files.append(plot_estimates(trials, fits, out_dir / "estimate_vs_measured.png"))
    if not hist.empty:
        hist.to_csv(out_dir / "hypervolume.csv", index=False)
        files += [out_dir / "hypervolume.csv", plot_history(hist, scale, out_dir / "hypervolume.png")]
    return Report(front, trials, files, fits, score(trials, scale), hist, syntheses(study.get_trials(deepcopy=False)))
