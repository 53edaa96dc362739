"""Trials per hour for 1 and 2 concurrent trials, local and Ray executors, and the orchestration share.

Runs the same small digits study (Yosys backend, fixed seed, random sampler, no continuation or harvest:
the same trials in every run) four times on this machine: executor
local/ray x max_concurrent 1/2. For every run it records the wall time, trials per hour, and how much
of the workers' time went to anything but the trial stages themselves:

    orchestration share = 1 - sum(train + firmware + synth stage seconds) / (wall seconds x concurrency)

That covers the driver's ask/tell loop, storage writes, artifact uploads, worker start-up (a process
forked per trial or stage from a warm server; on Ray, a task's hand-offs) and idle slots at the end of a
run. The driver's own CPU time (`time.process_time` of the driver process) is reported beside it, and the
start-up: seconds from the start until the first trial is asked (the executor and its preflight).

    python benchmarks/throughput.py [--trials 24] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import datetime
from pathlib import Path

import pandas as pd
from optuna.trial import TrialState
from provenance import provenance
from provenance import write as write_provenance
from tables import markdown

from hqsearch.config.schema import parse_config
from hqsearch.driver import run_study
from hqsearch.study.storage import load_existing


def study_raw(out: Path, executor: str, concurrent: int, trials: int) -> dict:
    return {
        "study": {
            "name": f"bench_{executor}_{concurrent}",
            "output_dir": str(out),
            "n_trials": trials,
            "seed": 0,
            "sampler": "random",  # the same trials whatever the concurrency: seeded, in the order asked
            "objectives": {"accuracy": "max", "luts": "min"},
        },
        # one design per trial, so a trial's cost is one training and one synthesis
        "training": {
            "epochs": 20,
            "learning_rate": 0.005,
            "harvest": {"max_candidates": 0},
            "continuation": {"share": 0.0},  # which point a training continues would depend on the order
        },
        "search_space": {"beta": {"low": 1e-6, "high": 1e-4, "log": True}, "widths": [[8], [16]]},
        "synthesis": {"backend": "yosys", "cache": False, "fidelity": "all"},  # every trial's design synthesised
        "execution": {
            "executor": executor,
            "max_concurrent": concurrent,
            "ray": {"num_cpus": os.cpu_count(), "train": {"num_cpus": 1}, "synth": {"num_cpus": 1}},
        },
    }


def measure(executor: str, concurrent: int, trials: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = parse_config(study_raw(Path(tmp), executor, concurrent, trials))
        cpu0, t0, started = time.process_time(), time.perf_counter(), datetime.now()
        summary = run_study(cfg)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        study = load_existing(cfg.study.storage_url, cfg.study.name)
        done = study.get_trials(states=(TrialState.COMPLETE,))
        first = min(t.datetime_start for t in study.get_trials() if t.datetime_start is not None)
        assert all("timings" in t.user_attrs for t in done)  # trainings only
        stages = {k: sum(t.user_attrs["timings"][k] for t in done) for k in ("train", "firmware", "synth")}
        busy = sum(stages.values())
    return {
        "executor": executor,
        "max_concurrent": concurrent,
        "trials": summary.complete,
        "wall_s": round(wall, 1),
        "trials_per_hour": round(3600 * summary.complete / wall, 1),
        **{f"{k}_s": round(v, 1) for k, v in stages.items()},
        "orchestration_share": round(1 - busy / (wall * concurrent), 3),
        "startup_s": round((first - started).total_seconds(), 1),
        "driver_cpu_s": round(cpu, 1),
        "driver_cpu_share": round(cpu / wall, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=24)  # so start-up and the end-of-run tail do not dominate
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    meta = provenance()  # the code as it is when the measurement starts
    rows = []
    for executor in ("local", "ray"):
        for concurrent in (1, 2):
            rows.append(measure(executor, concurrent, args.trials))
            print(json.dumps(rows[-1]), flush=True)
    df = pd.DataFrame(rows)
    for executor in ("local", "ray"):
        one = df[(df.executor == executor) & (df.max_concurrent == 1)]["trials_per_hour"].iloc[0]
        df.loc[df.executor == executor, "speedup_vs_1"] = (df[df.executor == executor]["trials_per_hour"] / one).round(
            2
        )
    args.out.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out / "throughput.csv", index=False)
    table = markdown(df)
    note = write_provenance(args.out, "throughput", meta)
    note += f"digits MLP, Yosys backend, {args.trials} trials per run, {os.cpu_count()} cores\n\n"
    (args.out / "throughput.md").write_text(note + table + "\n")
    print(df.to_string(index=False))


if __name__ == "__main__":
    main()
