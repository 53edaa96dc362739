"""The driver at thousands of trials: its bookkeeping per trial, and each sampler's time per ask, as the
study grows.

The real driver, the real storage (SQLite, PostgreSQL) and the real artifact store run a study whose trials
take no time: `InstantExecutor` (tests/instant_executor.py) answers every job at once with a synthetic
outcome shaped like a real one (metrics, sources, estimate, timings, a model file and a log uploaded as
artifacts). So what is timed is
the driver's own work per trial: ask (the sampler's time taken out, see below), the suggestions, the user
attributes, the artifacts, tell, the continuation and fidelity choices and the progress it reports.

    bookkeeping trials/s = trials told / (wall seconds - the sampler's seconds), per window of trials

The sampler's own time (its `infer_relative_search_space`, `sample_relative`, `sample_independent`,
`before_trial`, `after_trial`) is timed by a wrapper and reported per ask, for `random` during the
bookkeeping runs, and for `tpe`, `nsga2` and `gp` on copies of the finished study at several sizes.

    python benchmarks/driver_scale.py [--trials 2000] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pandas as pd
from provenance import ROOT, provenance
from provenance import write as write_provenance
from tables import markdown

from hqsearch.config import StudyConfig, parse_config
from hqsearch.driver import Driver, Progress
from hqsearch.space import suggest
from hqsearch.study import make_sampler

sys.path.insert(0, str(ROOT / "tests"))
import postgres_server  # noqa: E402
from instant_executor import InstantExecutor  # noqa: E402

WINDOWS = [(0, 100), (100, 500), (500, 1000), (1000, 1500), (1500, 2000)]
SIZES = [100, 500, 1000, 2000]  # study sizes at which each sampler's ask is timed
ASKS = {"tpe": 10, "nsga2": 10, "random": 10, "gp": 3}


class TimedSampler(optuna.samplers.BaseSampler):
    """Another sampler, with the seconds spent in it added up."""

    def __init__(self, inner: optuna.samplers.BaseSampler) -> None:
        self.inner, self.seconds = inner, 0.0

    def _timed(self, name: str, *args):
        t0 = time.perf_counter()
        try:
            return getattr(self.inner, name)(*args)
        finally:
            self.seconds += time.perf_counter() - t0

    def infer_relative_search_space(self, study, trial):
        return self._timed("infer_relative_search_space", study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._timed("sample_relative", study, trial, search_space)

    def sample_independent(self, study, trial, name, distribution):
        return self._timed("sample_independent", study, trial, name, distribution)

    def before_trial(self, study, trial):
        return self._timed("before_trial", study, trial)

    def after_trial(self, study, trial, state, values):
        return self._timed("after_trial", study, trial, state, values)

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()


def config(out: Path, storage: str, sampler: str, trials: int) -> StudyConfig:  # study named after its folder
    """The tool's defaults (Yosys, fidelity front, continuation), many trials in flight as on a cluster."""
    return parse_config(
        {
            "study": {
                "name": f"scale_{out.name}",
                "output_dir": str(out),
                "storage": storage,
                "n_trials": trials,
                "seed": 0,
                "sampler": sampler,
                "objectives": {"accuracy": "max", "luts": "min", "latency_cycles": "min"},
            },
            "synthesis": {"backend": "yosys"},
            "execution": {"max_concurrent": 16},
        }
    )


def bookkeeping(storage_name: str, url: str, trials: int, out: Path) -> tuple[list[dict], StudyConfig]:
    """One driver run of `trials` instant trials with the random sampler; rows per window."""
    cfg = config(out, url, "random", trials)
    marks: list[tuple[int, float, float]] = []  # (trainings told, wall s, sampler s)
    driver = Driver(cfg, executor=InstantExecutor())
    timed = TimedSampler(driver.study.sampler)
    driver.study.sampler = timed
    t0 = time.perf_counter()

    def on_progress(p: Progress) -> None:
        if not marks or marks[-1][0] != p.complete:
            marks.append((p.complete, time.perf_counter() - t0, timed.seconds))

    driver.on_progress = on_progress
    summary = driver.run()
    assert summary.complete == trials, summary
    rows = []
    for lo, hi in WINDOWS:
        if hi > trials:
            break
        a = next(m for m in marks if m[0] >= lo)
        b = next(m for m in marks if m[0] >= hi)
        wall, sampler = b[1] - a[1], b[2] - a[2]
        rows.append(
            {
                "storage": storage_name,
                "trials": f"{lo}-{hi}",
                "bookkeeping_trials_per_s": round((b[0] - a[0]) / (wall - sampler), 1),
                "ms_per_trial": round(1000 * (wall - sampler) / (b[0] - a[0]), 2),
                "random_sampler_ms_per_ask": round(1000 * sampler / (b[0] - a[0]), 2),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows, cfg


def sampler_times(cfg: StudyConfig, trials: int) -> list[dict]:
    """Each sampler's seconds per ask on in-memory copies of the finished study, cut to each size."""
    source = optuna.load_study(study_name=cfg.study.name, storage=cfg.study.storage_url)
    done = source.get_trials(deepcopy=False)
    rows = []
    for name in ("random", "nsga2", "tpe", "gp"):
        if name == "gp" and importlib.util.find_spec("torch") is None:
            print("gp: skipped, Optuna's GPSampler needs PyTorch (pip install 'hqsearch[gp]')", flush=True)
            continue
        for size in [s for s in SIZES if s <= trials]:
            study = optuna.create_study(directions=source.directions, sampler=make_sampler(cfg.study))
            study.add_trials(done[:size])
            timed = TimedSampler(make_sampler(cfg.study.model_copy(update={"sampler": name})))
            study.sampler = timed
            for _ in range(ASKS[name]):
                suggest(study.ask(), cfg, None, None)
            rows.append(
                {"sampler": name, "study_size": size, "ms_per_ask": round(1000 * timed.seconds / ASKS[name], 1)}
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    meta = provenance()
    rows = []
    with tempfile.TemporaryDirectory() as tmp, postgres_server.temporary_server() as pg:
        storages = {
            "sqlite": f"sqlite:///{tmp}/sqlite/study.db",
            "postgresql": pg,
            # the server acknowledges a commit before its log reaches the disk: see docs/config.md, `storage`
            "postgresql, synchronous_commit off": f"{pg}?options=-csynchronous_commit%3Doff",
        }
        for name, url in storages.items():
            found, cfg = bookkeeping(name, url, args.trials, Path(tmp) / name.replace(" ", "_").replace(",", ""))
            rows += found
        samplers = sampler_times(cfg, args.trials)
    book, asks = pd.DataFrame(rows), pd.DataFrame(samplers).pivot(index="study_size", columns="sampler")
    asks.columns = [f"{s}_ms_per_ask" for _, s in asks.columns]
    asks = asks.reset_index()
    args.out.mkdir(parents=True, exist_ok=True)
    book.to_csv(args.out / "driver_scale.csv", index=False)
    asks.to_csv(args.out / "driver_scale_samplers.csv", index=False)
    note = write_provenance(args.out, "driver_scale", meta)
    note += f"{args.trials} instant trials per storage, 16 in flight, random sampler; otherwise the default study\n\n"
    note += "## Bookkeeping per trial (the sampler's time taken out)\n\n" + markdown(book) + "\n\n"
    note += "## Each sampler's time per ask, by study size\n\n" + markdown(asks) + "\n"
    (args.out / "driver_scale.md").write_text(note)
    print(note)


if __name__ == "__main__":
    main()
