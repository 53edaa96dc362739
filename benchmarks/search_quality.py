"""Search quality: the front's hypervolume at equal training epochs, for each way of spending them.

On scikit-learn's digits with the da4ml estimate backend, every method gets the same budget of training
epochs (the demo study's: 20 trainings x 40 epochs = 800) on the same data split, and is repeated
with 3 seeds:

  default      studies/digits.yaml as shipped (TPE, in-run harvest on)
  no-harvest   the same, harvest off (only each training's final model is a point)
  random       the same with the random sampler
  nsga2        the same with the NSGA-II sampler
  harvest-N    the same with `training.harvest.max_candidates: N` (to choose the default)
  constant-beta  the same with `training.beta_schedule: constant` instead of the shipped ramp
  one-ramp     the HGQ authors' method: one training of the study's largest model for the whole budget,
               beta constant at the low end of the study's range for the first 1/16, then a log ramp to
               the high end; HGQ2's `ParetoFront` keeps every checkpoint non-dominated in (val_accuracy,
               ebops); each one is then calibrated, converted and measured (`hqsearch import`)

The score is the 2-D hypervolume of (test firmware accuracy above 0.8) x (log10 LUTs below 40,000), of
the front chosen on the validation split (DESIGN.md, "Search quality"); the validation figure is
recorded beside it. Each run is appended to `search_quality_runs.csv` as it ends, so an interrupted
benchmark continues where it stopped.

    python benchmarks/search_quality.py [--seeds 0 1 2] [--methods default no-harvest ...] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from pathlib import Path

import pandas as pd
import yaml
from provenance import ROOT, provenance
from provenance import write as write_provenance

from hqsearch.config import StudyConfig, parse_config
from hqsearch.hypervolume import history, resolve, score
from hqsearch.pareto import trials_frame
from hqsearch.study import load_existing

METHODS = ("default", "no-harvest", "random", "nsga2", "one-ramp")
REFERENCE = {"accuracy": 0.8, "luts": 40000}


def study_raw(method: str, seed: int, work: Path, trials: int, epochs: int) -> dict:
    raw = yaml.safe_load((ROOT / "studies" / "digits.yaml").read_text())
    raw = copy.deepcopy(raw)
    name = f"sq_{method}_s{seed}"
    raw["study"].update(
        name=name,
        output_dir=str(work / name),
        n_trials=trials,
        seed=seed,
        objectives={"accuracy": "max", "luts": "min"},
        constraints=[f"luts <= {REFERENCE['luts']}"],
    )
    raw["training"]["epochs"] = epochs
    raw.setdefault("synthesis", {})["cache"] = False  # every run measures its own designs
    raw["report"] = {"hypervolume": {"reference": REFERENCE}}
    harvest = raw["training"].setdefault("harvest", {})
    if method == "no-harvest":
        harvest["max_candidates"] = 0
    elif method.startswith("harvest-"):
        harvest["max_candidates"] = int(method.removeprefix("harvest-"))
    elif method in ("random", "nsga2"):
        raw["study"]["sampler"] = method
    elif method == "constant-beta":
        raw["training"]["beta_schedule"] = "constant"
    elif method == "one-ramp":
        raw["study"]["n_trials"] = 1
        raw["training"]["epochs"] = trials * epochs
    return raw


def one_ramp(cfg: StudyConfig, seed: int) -> None:
    """The authors' one long run, then its checkpoints imported into the study."""
    import keras
    from hgq.utils.sugar import BetaScheduler, ParetoFront, PieceWiseSchedule

    from hqsearch.checkpoints import import_checkpoints
    from hqsearch.data import load_dataset
    from hqsearch.model import build_model
    from hqsearch.space import TrialParams
    from hqsearch.train import train

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


def run(method: str, seed: int, work: Path, trials: int, epochs: int) -> tuple[dict, pd.DataFrame]:
    from hqsearch.driver import run_study

    cfg = parse_config(study_raw(method, seed, work, trials, epochs), f"search_quality[{method}, seed {seed}]")
    t0 = time.perf_counter()
    if method == "one-ramp":
        one_ramp(cfg, seed)
    else:
        run_study(cfg)
    wall = time.perf_counter() - t0
    study = load_existing(cfg.study.storage_url, cfg.study.name)
    frame = trials_frame(study)
    scale = resolve(cfg.study, cfg.report.hypervolume, frame)
    s = score(frame, scale)
    spent = trials * epochs if method == "one-ramp" else s.epochs
    if method == "one-ramp":  # one training whose points all exist once it ends
        hist = pd.DataFrame([{"trainings": 1, "epochs": spent, "hypervolume": s.hypervolume,
                              "test_hypervolume": s.test_hypervolume, "front": s.front}])  # fmt: skip
    else:
        hist = history(frame, scale)
    row = {
        "method": method,
        "seed": seed,
        "test_hypervolume": s.test_hypervolume,
        "hypervolume": s.hypervolume,
        "front": s.front,
        "trainings": 1 if method == "one-ramp" else s.trainings,
        "points": s.trainings + s.harvested + s.imported,
        "epochs": spent,
        "wall_s": wall,
    }
    return row, hist.assign(method=method, seed=seed)


def epochs_to_reach(hist: pd.DataFrame, target: float) -> float | None:
    """Epochs after which the mean (over seeds) test hypervolume first reaches `target`."""
    mean = hist.groupby("epochs")["test_hypervolume"].mean()
    reached = mean[mean >= target]
    return float(reached.index[0]) if len(reached) else None


def summarise(runs: pd.DataFrame, hists: pd.DataFrame) -> pd.DataFrame:
    g = runs.groupby("method", sort=False)
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
        }
    )
    if "random" in table.index:
        target = table.loc["random", "test_hv_mean"]
        table["epochs_to_random_final"] = [epochs_to_reach(hists[hists["method"] == m], target) for m in table.index]
    return table


def markdown(table: pd.DataFrame) -> str:
    def cell(v: object) -> str:
        if isinstance(v, float):
            return "-" if v != v else f"{v:.4g}"
        return str(v)

    cols = ["method", *table.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join([str(m), *(cell(v) for v in row)]) + " |" for m, row in table.iterrows()]
    return "\n".join(lines)


def plot(hists: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for method, h in hists.groupby("method", sort=False):
        mean = h.groupby("epochs")["test_hypervolume"].mean()
        if len(mean) == 1:
            ax.scatter(mean.index, mean.values, marker="*", s=120, label=method, zorder=3)
        else:
            ax.step(mean.index, mean.values, where="post", label=method)
    ax.set_xlabel("training epochs spent")
    ax.set_ylabel("hypervolume, test split (mean over seeds)")
    ax.set_title("digits, da4ml estimate: acc > 0.8 × log10 LUTs < 40,000", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--trials", type=int, default=20, help="trainings per study")
    ap.add_argument("--epochs", type=int, default=40, help="epochs per training")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "search_quality")
    args = ap.parse_args()
    os.chdir(ROOT)  # design cache and relative paths as for a user in the repository
    meta = provenance()
    args.out.mkdir(parents=True, exist_ok=True)
    runs_csv, hist_csv = args.out / "search_quality_runs.csv", args.out / "search_quality_history.csv"
    runs = pd.read_csv(runs_csv) if runs_csv.exists() else pd.DataFrame(columns=["method", "seed"])
    hists = pd.read_csv(hist_csv) if hist_csv.exists() else pd.DataFrame(columns=["method", "seed"])
    for seed in args.seeds:  # seed-major: a partial benchmark still compares every method
        for method in args.methods:
            if ((runs["method"] == method) & (runs["seed"] == seed)).any():
                continue
            row, hist = run(method, seed, args.work, args.trials, args.epochs)
            print(f"{method:>11} seed {seed}: test hypervolume {row['test_hypervolume']:.4f}, {row['wall_s']:.0f} s")
            runs = pd.concat([runs, pd.DataFrame([row])], ignore_index=True)
            hists = pd.concat([hists, hist], ignore_index=True)
            runs.to_csv(runs_csv, index=False)
            hists.to_csv(hist_csv, index=False)
    table = summarise(runs, hists)
    table.to_csv(args.out / "search_quality.csv")
    plot(hists, args.out / "search_quality.png")
    header = write_provenance(args.out, "search_quality", meta)
    (args.out / "search_quality.md").write_text(
        "# Search quality at equal training epochs\n\n" + header + markdown(table) + "\n"
    )
    print(table.to_string())


if __name__ == "__main__":
    main()
