"""Training speed on each Keras backend, and what the rest of a trial then costs.

Part one: epochs per second of one HGQ2 training (the digits and HTRU2 studies' models at the smallest
and largest widths of their search spaces, the trial's own data, batching and callbacks) on JAX and on
TensorFlow, one training alone and two at once, each in a fresh process with its threads sized as the
executors size them (the machine's cores shared out). `first_epoch_s` is the first epoch, which holds
the compilation (XLA under JAX, graph tracing under TensorFlow; no compilation cache); `epochs_per_s`
is the median over the epochs after it.

Part two: the demo (`hqsearch run studies/digits.yaml`) on each backend, in a fresh folder with an empty
compilation cache: its wall time, and the seconds its trials spent in each stage (`train`: data, model,
training, calibration; `firmware`: tracing and emulating every design; `synth`), summed over trials.
All in one run, side by side.

    python benchmarks/training_speed.py [--out benchmarks/results]     # about 15 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml
from provenance import ROOT, provenance
from provenance import write as write_provenance
from tables import markdown

BACKENDS = ("jax", "tensorflow")
STUDIES = ("digits", "htru2")
EPOCHS = 22  # the first (compilation), then 21 timed


def one_training(backend: str, study: str, widths: tuple[int, ...], threads: int) -> dict:
    """In this (fresh) process: one training as a trial runs it; its per-epoch times."""
    from hqsearch.keras_backend import prepare

    prepare(backend, threads, compile_cache=None)
    import keras
    import numpy as np

    from hqsearch.config.schema import load_config
    from hqsearch.pipeline.data import load_dataset
    from hqsearch.pipeline.model import build_model
    from hqsearch.pipeline.train import train
    from hqsearch.search.space import TrialParams

    cfg = load_config(ROOT / "studies" / f"{study}.yaml")
    lr = cfg.training.learning_rate
    params = TrialParams(1e-5, 1e-7, 0.0, "intra", "intra", lr, widths, epochs=EPOCHS, beta_start=1e-7, hold=2)
    keras.utils.set_random_seed(0)
    data = load_dataset(cfg.data)
    model = build_model(cfg.model, params, data.input_shape, data.n_classes)

    class Clock(keras.callbacks.Callback):
        def on_train_begin(self, logs=None) -> None:
            self.times = [time.perf_counter()]

        def on_epoch_end(self, epoch, logs=None) -> None:
            self.times.append(time.perf_counter())

    clock = Clock()
    result = train(model, data, cfg.training, params, watch=[clock])
    took = np.diff(clock.times)
    return {
        "backend": keras.config.backend(),
        "first_epoch_s": float(took[0]),
        "epochs_per_s": float(1 / np.median(took[1:])),
        "val_accuracy": result.val_accuracy,
    }


def speeds(out: Path) -> pd.DataFrame:
    from hqsearch.config.schema import load_config

    cores = os.cpu_count() or 1
    rows = []
    for study in STUDIES:
        space = load_config(ROOT / "studies" / f"{study}.yaml").search_space.widths
        for widths in (min(space, key=sum), max(space, key=sum)):
            for backend in BACKENDS:
                for concurrent in (1, 2):
                    threads = max(1, cores // concurrent)
                    arg = json.dumps([backend, study, list(widths), threads])
                    procs = [
                        subprocess.Popen([sys.executable, __file__, "--one", arg], stdout=subprocess.PIPE, text=True)
                        for _ in range(concurrent)
                    ]
                    for p in procs:
                        got = json.loads(p.communicate()[0].strip().splitlines()[-1])
                        assert got["backend"] == backend, got
                        rows.append({"study": study, "widths": "-".join(map(str, widths)), "concurrent": concurrent,
                                     **got})  # fmt: skip
                    print(rows[-1], flush=True)
    frame = pd.DataFrame(rows)
    frame.to_csv(out / "training_speed_runs.csv", index=False)
    return frame


def demo(backend: str, work: Path) -> dict:
    """The demo study as shipped, on `backend`, in a fresh folder (an empty compilation cache)."""
    import optuna

    raw = yaml.safe_load((ROOT / "studies" / "digits.yaml").read_text())
    folder = work / f"demo_{backend}"
    raw["study"]["output_dir"] = str(folder / "runs")
    raw["execution"].update(keras_backend=backend, compile_cache_dir=str(folder / "compile_cache"))
    raw.setdefault("synthesis", {})["cache_dir"] = str(folder / "design_cache")
    config = folder / "digits.yaml"
    folder.mkdir(parents=True)
    config.write_text(yaml.safe_dump(raw))
    t0 = time.perf_counter()
    subprocess.run(["hqsearch", "run", str(config)], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    study = optuna.load_study(study_name=raw["study"]["name"], storage=f"sqlite:///{folder / 'runs' / 'study.db'}")
    stages = {"train": 0.0, "firmware": 0.0, "synth": 0.0}
    trainings = 0
    for t in study.get_trials(deepcopy=False):
        timings = t.user_attrs.get("timings", {})
        trainings += "train" in timings
        for k in stages:
            stages[k] += timings.get(k, 0.0)
    return {"backend": backend, "wall_s": wall, "trainings": trainings, "points": len(study.trials),
            **{f"{k}_s": v for k, v in stages.items()}}  # fmt: skip


def summary(runs: pd.DataFrame) -> pd.DataFrame:
    keys = ["study", "widths", "concurrent", "backend"]
    table = runs.groupby(keys, sort=False)[["epochs_per_s", "first_epoch_s"]].mean().unstack("backend")
    table.columns = [f"{metric} {backend}" for metric, backend in table.columns]
    table["epochs/s jax ÷ tensorflow"] = table["epochs_per_s jax"] / table["epochs_per_s tensorflow"]
    return table.reset_index()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # a training in this process: [backend, study, widths, threads]
    args = ap.parse_args()
    if args.one:
        backend, study, widths, threads = json.loads(args.one)
        print(json.dumps(one_training(backend, study, tuple(widths), threads)))
        return
    os.chdir(ROOT)
    meta = provenance()
    args.out.mkdir(parents=True, exist_ok=True)
    table = summary(speeds(args.out))
    with tempfile.TemporaryDirectory(prefix="hqsearch-demo-") as work:
        demos = pd.DataFrame([demo(b, Path(work)) for b in BACKENDS])
    for stage in ("train", "firmware", "synth"):
        demos[f"{stage}_share"] = demos[f"{stage}_s"] / demos[["train_s", "firmware_s", "synth_s"]].sum(axis=1)
    table.to_csv(args.out / "training_speed.csv", index=False)
    demos.to_csv(args.out / "training_speed_demo.csv", index=False)
    header = write_provenance(args.out, "training_speed", meta)
    (args.out / "training_speed.md").write_text(
        "# Training speed per Keras backend\n\n" + header
        + "## One training (epochs per second after the first; the first epoch's seconds)\n\n"
        + markdown(table.round(3))
        + "\n\n## The demo study (`hqsearch run studies/digits.yaml`, empty caches), stage seconds summed over"
        " trials\n\n" + markdown(demos.round(2)) + "\n"
    )  # fmt: skip
    print(table.to_string())
    print(demos.to_string())


if __name__ == "__main__":
    main()
