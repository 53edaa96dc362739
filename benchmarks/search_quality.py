"""Search quality: the front's hypervolume at equal training epochs, for each way of spending them.

Two real datasets, each with its study as shipped (`studies/digits.yaml`, `studies/htru2.yaml`) and the
da4ml estimate backend; every method gets the same budget of training epochs (digits 800, HTRU2 600; on
request `digits-4x`, digits with 3,200) on the same data split, and is repeated with 3 seeds:

  default      the study as shipped: TPE over ramp shapes and lengths, continuation of the front's most
               promising points, in-run harvest, the epoch budget
  stopping     the default, with a training stopped once behind the front (`training.stopping`)
  fixed-share  the default with the continuation share fixed (`continuation.adapt: false`)
  fixed-length the same search without the ramp shape, length or continuation: 20 fresh trainings of
               budget/20 epochs, each a log ramp over the whole range (the issue-8 default, for reference)
  no-harvest, random, nsga2, harvest-N, constant-beta
               fixed-length with harvest off, the random or NSGA-II sampler, `harvest.max_candidates: N`,
               or `beta_schedule: constant`
  one-ramp     the HGQ authors' method: one training of the study's largest model for the whole budget
               (on the study's Keras backend),
               beta constant at the low end of the study's range for the first 1/16, then a log ramp to
               the high end; HGQ2's `ParetoFront` keeps every checkpoint non-dominated in (val_accuracy,
               ebops); each one is then calibrated, converted and measured (`hqsearch import`)
  one-ramp-hours
               one-ramp given the wall-clock time the default took (front per hour): its length is the
               budget scaled by the default's wall time over one-ramp's, both measured in this run's rows
               for the same study and seed (run them first); one ramp on every core
  METHOD@BACKEND
               the method with its trials on that Keras backend (`default@tensorflow`); the others run on
               the default (`execution.keras_backend`)

The score is the 2-D hypervolume of (test firmware accuracy above a floor) x (log10 LUTs below 40,000)
of the front chosen on the validation split (DESIGN.md, "Search quality"): the floor is 0.8 on digits
and 0.95 on HTRU2 (where a majority vote scores 0.91). The validation figure is recorded beside it,
each run's front goes to `search_quality_fronts.csv`, and `vs_one_ramp` is the ratio of mean test
hypervolumes to the authors' method on the same data. Each run is appended to
`search_quality_runs.csv` as it ends, so an interrupted benchmark continues where it stopped.

    python benchmarks/search_quality.py [--studies digits htru2] [--seeds 0 1 2] [--methods default one-ramp ...]
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml
from optuna.trial import FrozenTrial, TrialState
from provenance import ROOT, provenance
from provenance import write as write_provenance

from hqsearch.analysis.pareto import trials_frame
from hqsearch.config.schema import StudyConfig, parse_config
from hqsearch.search.front import nondominated
from hqsearch.search.hypervolume import complete, history, resolve, score
from hqsearch.study.attrs import CONTINUES_ATTR, MEASURES_ATTR, PARENT_ATTR
from hqsearch.study.points import Origin, origin
from hqsearch.study.storage import load_existing

METHODS = ("default", "one-ramp")  # the others on request: --methods fixed-length no-harvest ...


@dataclass(frozen=True)
class Bench:
    """One dataset's study as shipped, its hypervolume reference and its epoch budget."""

    config: str
    reference: dict[str, float]
    trials: int  # trainings x epochs of the fixed-length methods = the epoch budget
    epochs: int

    @property
    def budget(self) -> int:
        return self.trials * self.epochs


BENCHES = {
    "digits": Bench("digits.yaml", {"accuracy": 0.8, "luts": 40000}, 20, 40),
    "htru2": Bench("htru2.yaml", {"accuracy": 0.95, "luts": 40000}, 20, 30),
    "digits-4x": Bench("digits.yaml", {"accuracy": 0.8, "luts": 40000}, 80, 40),  # does the lead hold?
}


def study_raw(bench: str, method: str, seed: int, work: Path, epochs: int | None = None) -> dict:
    """`method@backend` (`default@tensorflow`) is the method with its trials on that Keras backend; `epochs`
    is one-ramp-hours' length."""
    b = BENCHES[bench]
    raw = yaml.safe_load((ROOT / "studies" / b.config).read_text())
    raw = copy.deepcopy(raw)
    name = f"sq_{bench}_{method.replace('@', '_')}_s{seed}"
    method, _, backend = method.partition("@")
    if backend:
        raw.setdefault("execution", {})["keras_backend"] = backend
    raw["study"].update(
        name=name,
        output_dir=str(work / name),
        n_trials=None,
        budget=b.budget,
        seed=seed,
        objectives={"accuracy": "max", "luts": "min"},
        constraints=[f"luts <= {b.reference['luts']}"],
    )
    raw.setdefault("synthesis", {})["cache"] = False  # every run measures its own designs
    raw["report"] = {"hypervolume": {"reference": b.reference}}
    harvest = raw["training"].setdefault("harvest", {})
    if method not in ("default", "stopping", "fixed-share", "one-ramp", "one-ramp-hours"):  # n trainings of one length
        raw["study"].update(n_trials=b.trials, budget=None)
        raw["training"].update(epochs=b.epochs, continuation={"share": 0.0})
        raw["search_space"].update(epochs=None, ramp={"start": 0.0, "hold": 0.0})
    if method == "stopping":
        raw["training"]["stopping"] = {"behind_front": True}
    elif method == "fixed-share":
        raw["training"]["continuation"] = {**raw["training"].get("continuation", {}), "adapt": False}
    elif method == "no-harvest":
        harvest["max_candidates"] = 0
    elif method.startswith("harvest-"):
        harvest["max_candidates"] = int(method.removeprefix("harvest-"))
    elif method in ("random", "nsga2"):
        raw["study"]["sampler"] = method
    elif method == "constant-beta":
        raw["training"]["beta_schedule"] = "constant"
    elif method in ("one-ramp", "one-ramp-hours"):
        raw["study"].update(n_trials=1, budget=None)
        raw["training"]["epochs"] = epochs or b.budget
    return raw


def hours_epochs(runs: pd.DataFrame, bench: str, seed: int) -> int:
    """One-ramp's length at the default's wall-clock time: the budget scaled by their measured wall times."""
    walls = runs[(runs["study"] == bench) & (runs["seed"] == seed)].set_index("method")["wall_s"]
    if not {"default", "one-ramp"} <= set(walls.index):
        raise SystemExit(f"one-ramp-hours needs this run's default and one-ramp rows for {bench}, seed {seed}")
    return int(BENCHES[bench].budget * walls["default"] / walls["one-ramp"])


def one_ramp(cfg: StudyConfig, seed: int) -> None:
    """The authors' one long run, then its checkpoints imported into the study. It trains in this process,
    on the study's Keras backend (as the authors train, on JAX by default) with every core."""
    from hqsearch.keras_backend import prepare

    prepare(cfg.execution.keras_backend, os.cpu_count() or 1, cfg.execution.compile_cache)
    import keras
    from hgq.utils.sugar import BetaScheduler, ParetoFront, PieceWiseSchedule

    from hqsearch.pipeline.checkpoints import import_checkpoints
    from hqsearch.pipeline.data import load_dataset
    from hqsearch.pipeline.model import build_model
    from hqsearch.pipeline.train import train
    from hqsearch.search.space import TrialParams

    beta = cfg.search_space.beta
    low, high = beta.low, beta.high
    epochs = cfg.training.epochs
    widths = max(cfg.search_space.widths or [cfg.model.widths], key=sum)
    params = TrialParams(low, 0.0, 0.0, "intra", "intra", cfg.training.learning_rate, tuple(widths))
    keras.utils.set_random_seed(seed)
    data = load_dataset(cfg.data)
    model = build_model(cfg.model, params, data.input_shape, data.n_classes)
    schedule = PieceWiseSchedule([(0, low, "constant"), (epochs // 16, low, "log"), (epochs, high, "constant")])
    folder = cfg.study.run_dir / "pareto_front"
    front = ParetoFront(folder, ["val_accuracy", "ebops"], [1, -1])
    constant = cfg.training.model_copy(update={"beta_schedule": "constant"})
    train(model, data, constant, params, watch=[BetaScheduler(schedule), front])
    import_checkpoints(cfg, [folder])


def run(
    bench: str, method: str, seed: int, work: Path, epochs: int | None = None
) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    from hqsearch.driver import run_study

    raw = study_raw(bench, method, seed, work, epochs)
    cfg = parse_config(raw, f"search_quality[{bench}, {method}, seed {seed}]")
    ramps = method.startswith("one-ramp")
    t0 = time.perf_counter()
    ended = {"failed": 0, "stopped_because": None}
    if ramps:
        one_ramp(cfg, seed)
    else:
        summary = run_study(cfg)
        ended = {"failed": summary.failed_this_run, "stopped_because": summary.stopped_because}
    wall = time.perf_counter() - t0
    study = load_existing(cfg.study.storage_url, cfg.study.name)
    frame = trials_frame(study)
    scale = resolve(cfg.study, cfg.report.hypervolume, frame)
    s = score(frame, scale)
    spent = cfg.training.epochs if ramps else s.epochs
    if ramps:  # one training whose points all exist once it ends
        hist = pd.DataFrame([{"trainings": 1, "epochs": spent, "seconds": wall, "hypervolume": s.hypervolume,
                              "test_hypervolume": s.test_hypervolume, "front": s.front}])  # fmt: skip
    else:
        hist = history(frame, scale)
    row = {
        "study": bench,
        "method": method,
        "seed": seed,
        "test_hypervolume": s.test_hypervolume,
        "hypervolume": s.hypervolume,
        "front": s.front,
        "trainings": 1 if ramps else s.trainings,
        "points": s.trainings + s.harvested + s.imported,
        "epochs": spent,
        "wall_s": wall,
        **ended,  # why a run spent less than its budget
    }
    points = complete(frame).dropna(subset=list(scale.metrics))
    on_front = nondominated(points[list(scale.metrics)].to_numpy(dtype=float), scale.maximise)
    front = points[on_front][["trial", "accuracy", "test_accuracy", "luts", "origin", "epoch"]]
    row["idle_epochs"] = 0.0 if ramps else idle_share(study.trials, set(front["trial"]))
    tag = {"study": bench, "method": method, "seed": seed}
    return row, hist.assign(**tag), front.assign(**tag)


def idle_share(trials: list[FrozenTrial], front: set[int]) -> float:
    """Share of the training epochs spent by trainings that put nothing on the final front: neither a point
    of their own (the final model, a harvested epoch, a later measurement of either) nor a continuation
    that descends from them."""
    by = {t.number: t for t in trials}

    def producer(n: int | None) -> int | None:  # the training a point came from
        while n is not None and origin(by[n]) is not Origin.TRAINING:
            t = by[n]
            n = t.user_attrs.get(PARENT_ATTR) if origin(t) is Origin.HARVEST else t.user_attrs.get(MEASURES_ATTR)
        return n

    useful: set[int] = set()
    for n in front:
        n = producer(n)
        while n is not None and n not in useful:  # the training, and the chain it continued
            useful.add(n)
            n = producer(by[n].user_attrs.get(CONTINUES_ATTR))
    done = [t for t in trials if origin(t) is Origin.TRAINING and t.state == TrialState.COMPLETE]
    epochs = {t.number: t.user_attrs.get("info", {}).get("epochs", 0) for t in done}
    total = sum(epochs.values())
    return sum(e for n, e in epochs.items() if n not in useful) / total if total else 0.0


def mean_curve(hist: pd.DataFrame, x: str = "epochs") -> pd.Series:
    """Mean test hypervolume over seeds against epochs spent (or `seconds` waited): each seed's curve holds
    its last value until its next training ends (seeds end trainings at different epochs)."""
    if x not in hist or hist[x].isna().all():
        return pd.Series(dtype=float)
    per_seed = hist.pivot_table(index=x, columns="seed", values="test_hypervolume", aggfunc="last")
    return per_seed.sort_index().ffill().fillna(0.0).mean(axis=1)


def to_reach(hist: pd.DataFrame, target: float, x: str = "epochs") -> float | None:
    """Epochs (or seconds) after which the mean (over seeds) test hypervolume first reaches `target`."""
    mean = mean_curve(hist, x)
    reached = mean[mean >= target]
    return float(reached.index[0]) if len(reached) else None


def summarise(runs: pd.DataFrame, hists: pd.DataFrame) -> pd.DataFrame:
    """Per study and method: mean over seeds, and the ratio to the authors' one-ramp method."""
    g = runs.groupby(["study", "method"], sort=False)
    table = pd.DataFrame(
        {
            "seeds": g["seed"].count(),
            "test_hv_mean": g["test_hypervolume"].mean(),
            "test_hv_std": g["test_hypervolume"].std(ddof=0),
            "val_hv_mean": g["hypervolume"].mean(),
            "front_mean": g["front"].mean(),
            "points_mean": g["points"].mean(),
            "trainings": g["trainings"].mean(),
            "epochs": g["epochs"].mean(),
            "wall_s_mean": g["wall_s"].mean(),
            "idle_epochs_mean": g["idle_epochs"].mean() if "idle_epochs" in runs else float("nan"),
        }
    )
    methods = table.index.get_level_values("method")
    ramp = table["test_hv_mean"][methods == "one-ramp"].droplevel("method")
    table["vs_one_ramp"] = [v / ramp.get(study, float("nan")) for (study, _), v in table["test_hv_mean"].items()]
    hours = table["test_hv_mean"][methods == "one-ramp-hours"].droplevel("method")
    if len(hours):  # front per hour: against one-ramp given the default's wall-clock time
        table["vs_one_ramp_hours"] = [
            v / hours.get(study, float("nan")) for (study, _), v in table["test_hv_mean"].items()
        ]
    for x in ("epochs", "seconds"):  # at equal epochs, and what a user waits (one-ramp: its wall_s_mean)
        reach = []
        for study, method in table.index:
            target = ramp.get(study)
            h = hists[(hists["study"] == study) & (hists["method"] == method)]
            reach.append(None if target is None or method.startswith("one-ramp") else to_reach(h, target, x))
        table[f"{x}_to_one_ramp"] = reach
    return table


def markdown(table: pd.DataFrame) -> str:
    def cell(v: object) -> str:
        if isinstance(v, float):
            return "-" if v != v else f"{v:.4g}"
        return "-" if v is None else str(v)

    cols = ["study", "method", *table.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join([*map(str, key), *(cell(v) for v in row)]) + " |" for key, row in table.iterrows()]
    return "\n".join(lines)


def plot(hists: pd.DataFrame, fronts: pd.DataFrame, path: Path) -> None:
    """Per study: hypervolume against epochs spent (top), and seed 0's test fronts (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hists = hists[~hists["method"].str.contains("(issue", regex=False)]  # earlier measurements: tables only
    fronts = fronts[fronts["method"].isin(set(hists["method"]))]
    studies = list(dict.fromkeys(hists["study"]))
    colour = {m: f"C{i}" for i, m in enumerate(dict.fromkeys(hists["method"]))}
    fig, axes = plt.subplots(2, len(studies), figsize=(6.5 * len(studies), 8), dpi=110, squeeze=False)
    for col, study in enumerate(studies):
        ref = BENCHES[study].reference
        ax = axes[0, col]
        for method, h in hists[hists["study"] == study].groupby("method", sort=False):
            mean = mean_curve(h)
            if len(mean) == 1:
                ax.scatter(mean.index, mean.values, marker="*", s=120, label=method, zorder=3, color=colour[method])
            else:
                ax.step(mean.index, mean.values, where="post", label=method, color=colour[method])
        ax.set_xlabel("training epochs spent")
        ax.set_ylabel("hypervolume, test split (mean over seeds)")
        ax.set_title(f"{study}, da4ml estimate: acc > {ref['accuracy']} × log10 LUTs < {ref['luts']:,}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
        ax = axes[1, col]
        for method, f in fronts[(fronts["study"] == study) & (fronts["seed"] == 0)].groupby("method", sort=False):
            f = f.sort_values("luts")
            ax.step(f["luts"], f["test_accuracy"], where="post", marker="o", ms=3, label=method, color=colour[method])
        ax.set_xscale("log")
        ax.set_ylim(bottom=ref["accuracy"])
        ax.set_xlabel("LUTs (da4ml estimate)")
        ax.set_ylabel("firmware accuracy, test split")
        ax.set_title(f"{study}, seed 0: fronts chosen on validation", fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path) if path.exists() else pd.DataFrame(columns=["study", "method", "seed"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", nargs="+", default=["digits", "htru2"], choices=list(BENCHES))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "search_quality")
    args = ap.parse_args()
    os.chdir(ROOT)  # design cache and relative paths as for a user in the repository
    meta = provenance()
    args.out.mkdir(parents=True, exist_ok=True)
    paths = {k: args.out / f"search_quality_{k}.csv" for k in ("runs", "history", "fronts")}
    runs, hists, fronts = (_read(p) for p in paths.values())
    for study in args.studies:
        for seed in args.seeds:  # seed-major: a partial benchmark still compares every method
            for method in args.methods:
                if ((runs["study"] == study) & (runs["method"] == method) & (runs["seed"] == seed)).any():
                    continue
                epochs = hours_epochs(runs, study, seed) if method == "one-ramp-hours" else None
                row, hist, front = run(study, method, seed, args.work, epochs)
                print(f"{study} {method:>11} seed {seed}: test hypervolume {row['test_hypervolume']:.4f}")
                runs = pd.concat([runs, pd.DataFrame([row])], ignore_index=True)
                hists = pd.concat([hists, hist], ignore_index=True)
                fronts = pd.concat([fronts, front], ignore_index=True)
                for frame, p in zip((runs, hists, fronts), paths.values(), strict=True):
                    frame.to_csv(p, index=False)
    table = summarise(runs, hists)
    table.to_csv(args.out / "search_quality.csv")
    plot(hists, fronts, args.out / "search_quality.png")
    header = write_provenance(args.out, "search_quality", meta)
    (args.out / "search_quality.md").write_text(
        "# Search quality at equal training epochs\n\n" + header + markdown(table) + "\n"
    )
    print(table.to_string())


if __name__ == "__main__":
    main()
