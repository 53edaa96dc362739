"""One training as a picture: loss and validation accuracy, EBOPs and beta against epochs, with the
harvested candidates marked at the epochs they were taken. Stored with every trial (`training.png`, and
the numbers as `training.csv`), so the dashboard shows how a point was reached, not only where it ended.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

COLUMNS = ("loss", "val_loss", "accuracy", "val_accuracy", "ebops", "beta")  # Keras's log keys, as HGQ2 logs them


def write_history(history: dict[str, list[float]], path: Path) -> Path:
    """The per-epoch logs as CSV, epochs counted from 1 as Keras prints them."""
    keys = [k for k in COLUMNS if k in history] + sorted(set(history) - set(COLUMNS))
    n = max((len(v) for v in history.values()), default=0)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", *keys])
        for i in range(n):
            w.writerow([i + 1, *(history[k][i] if i < len(history[k]) else "" for k in keys)])
    return path


def plot_training(
    history: dict[str, list[float]],
    harvested: list[tuple[int, float, float]],  # (epoch, val_accuracy, training EBOPs) of each candidate
    title: str,
    path: Path,
) -> Path:
    """Three panels over the epochs: loss; accuracy (candidates marked); EBOPs and beta, both in log."""
    from matplotlib.figure import Figure  # no pyplot: no global state in a worker

    epochs = list(range(1, 1 + max((len(v) for v in history.values()), default=0)))
    fig = Figure(figsize=(7, 7.5), dpi=100, layout="constrained")
    loss_ax, acc_ax, ebops_ax = fig.subplots(3, 1, sharex=True)
    fig.suptitle(title, fontsize=9)

    def line(ax, key: str, label: str, **style) -> None:
        values = history.get(key)
        if values:
            ax.plot(epochs[: len(values)], values, label=label, **style)

    line(loss_ax, "loss", "training loss (with the EBOPs and L1/L2 penalties)", color="tab:blue")
    line(loss_ax, "val_loss", "validation loss", color="tab:orange")
    loss_ax.set_ylabel("loss")
    line(acc_ax, "accuracy", "training accuracy", color="tab:blue", alpha=0.5)
    line(acc_ax, "val_accuracy", "validation accuracy", color="tab:orange")
    acc_ax.set_ylabel("accuracy")

    ebops = [v if v > 0 else math.nan for v in history.get("ebops", [])]  # log axis: a collapsed model shows a gap
    if ebops:
        ebops_ax.plot(epochs[: len(ebops)], ebops, color="tab:green", label="EBOPs (training)")
        ebops_ax.set_yscale("log")
    ebops_ax.set_ylabel("EBOPs")
    ebops_ax.set_xlabel("epoch")
    beta = [v if v > 0 else math.nan for v in history.get("beta", [])]
    if beta and any(not math.isnan(b) for b in beta):
        beta_ax = ebops_ax.twinx()
        beta_ax.plot(epochs[: len(beta)], beta, color="tab:red", linestyle="--", label="beta")
        beta_ax.set_yscale("log")
        beta_ax.set_ylabel("beta", color="tab:red")

    if harvested:
        ep, acc, eb = zip(*harvested, strict=True)
        style = {"marker": "D", "s": 28, "color": "black", "zorder": 3}
        acc_ax.scatter(ep, acc, label="harvested candidate", **style)
        ebops_ax.scatter(ep, eb, label="harvested candidate", **style)
        for ax in (loss_ax, acc_ax, ebops_ax):
            for e in ep:
                ax.axvline(e, color="grey", linewidth=0.5, linestyle=":")
    for ax in (loss_ax, acc_ax, ebops_ax):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best")
        ax.grid(alpha=0.3)
    fig.savefig(path)
    return path
