"""The driver at thousands of trials: its bookkeeping per trial, and each sampler's time per ask, as the
study grows.

The real driver, the real storage and the real artifact store run a study whose trials
take no time: `InstantExecutor` (tests/instant_executor.py) answers every job at once with a synthetic
outcome shaped like a real one (metrics, sources, estimate, timings, a model file and a log uploaded as
artifacts). So what is timed is
the driver's own work per trial: ask (the sampler's time taken out, see below), the suggestions, the user
attributes, the artifacts, tell, the continuation and fidelity choices and the progress it reports.

    bookkeeping trials/s = trials told / (wall seconds - the sampler's seconds), per window of trials

The sampler's own time (its `infer_relative_search_space`, `sample_relative`, `sample_independent`,
`before_trial`, `after_trial`) is timed by a wrapper and reported per ask, for `random` during the
bookkeeping runs, and for `tpe`, `nsga2` and `gp` on copies of the finished study at several sizes.

The storages, side by side in one run: SQLite; PostgreSQL (Optuna's RDB storage), also with
`synchronous_commit` off; Optuna's journal file (`journal:///path`, `JournalFileBackend` with the open(2)
lock, one writer: this driver); and Optuna's gRPC storage proxy (`grpc://host:port`: a separate process
runs `optuna.storages.run_grpc_proxy_server` in front of the same PostgreSQL server, through
`optuna.storages.get_storage`, i.e. with Optuna's in-process trial cache).

`--profile N` runs N trials per storage under cProfile and writes where the driver's time goes
(`driver_scale_profile.md`); `--no-samplers` keeps the sampler table of an earlier run.

    python benchmarks/driver_scale.py [--trials 2000] [--storages sqlite journal …] [--no-samplers]
                                      [--profile 300] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import json
import pstats
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
import pandas as pd
from provenance import ROOT, provenance
from provenance import write as write_provenance
from tables import markdown

from hqsearch.config.schema import StudyConfig, parse_config
from hqsearch.driver import Driver, Progress
from hqsearch.search.space import suggest
from hqsearch.study.optuna_private import rdb_backend, storage_of  # noqa: E402
from hqsearch.study.storage import load_existing, make_sampler, make_storage

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


@contextmanager
def grpc_proxy(url: str) -> Iterator[str]:
    """Optuna's gRPC storage proxy in front of the storage at `url`, in a process of its own on loopback, as
    Optuna documents it (`get_storage`, so with its trial cache): the `grpc://` URL the driver opens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = (
        "import sys, optuna; optuna.logging.set_verbosity(optuna.logging.WARNING); "
        "optuna.storages.run_grpc_proxy_server(optuna.storages.get_storage(sys.argv[1]), host='127.0.0.1', "
        "port=int(sys.argv[2]))"
    )
    server = subprocess.Popen([sys.executable, "-W", "ignore", "-c", code, url, str(port)])
    try:
        yield f"grpc://127.0.0.1:{port}"  # make_storage waits for it to answer
    finally:
        server.terminate()
        server.wait(timeout=30)


# name -> how its URL is made from (temporary folder, PostgreSQL URL); gRPC is started where it is used
STORAGES = {
    "sqlite": lambda tmp, pg: f"sqlite:///{tmp}/sqlite/study.db",
    "postgresql": lambda tmp, pg: pg,
    # the server acknowledges a commit before its log reaches the disk: see docs/config.md, `storage`
    "postgresql, synchronous_commit off": lambda tmp, pg: f"{pg}?options=-csynchronous_commit%3Doff",
    "journal file": lambda tmp, pg: f"journal:///{tmp}/journal/study.log",
    "grpc proxy → postgresql": lambda tmp, pg: pg,  # the proxy's own storage
}


def folder(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


@contextmanager
def storage_url(name: str, tmp: str, pg: str) -> Iterator[str]:
    url = STORAGES[name](tmp, pg)
    if name.startswith("grpc"):
        with grpc_proxy(url) as proxied:
            yield proxied
    else:
        yield url


def bookkeeping(storage_name: str, url: str, trials: int, out: Path) -> tuple[list[dict], StudyConfig, float]:
    """One driver run of `trials` instant trials with the random sampler: rows per window, the config, and
    the bookkeeping trials/s over the whole run."""
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
    whole = round(marks[-1][0] / (marks[-1][1] - marks[-1][2]), 1)  # from the driver's start
    return rows, cfg, whole


def dashboard_reads(name: str, cfg: StudyConfig) -> str:
    """Whether optuna-dashboard's API lists the study and all its trials. A journal file is opened as
    `optuna-dashboard ./study.log` opens it (its own guess from the path), the others as `hqsearch dashboard`
    does (`make_storage`; `optuna-dashboard <postgresql URL>` reads the database behind a gRPC proxy)."""
    from wsgiref.util import setup_testing_defaults

    from optuna_dashboard import wsgi
    from optuna_dashboard._storage_url import get_storage

    url = cfg.study.storage_url
    app = wsgi(get_storage(url.removeprefix("journal:///")) if name.startswith("journal") else make_storage(url))

    def get(path: str) -> dict:
        env: dict = {"PATH_INFO": path, "QUERY_STRING": "after=0"}
        setup_testing_defaults(env)
        status: list[str] = []
        body = b"".join(app(env, lambda s, h, *a: status.append(s)))
        assert status[0].startswith("200"), (path, status, body[:300])
        return json.loads(body)

    studies = {s["study_name"]: s["study_id"] for s in get("/api/studies")["study_summaries"]}
    shown = len(get(f"/api/studies/{studies[cfg.study.name]}")["trials"])
    stored = len(load_existing(url, cfg.study.name).trials)
    return "yes" if shown == stored else f"no ({shown} of {stored} trials)"


def resumes(cfg: StudyConfig, more: int) -> dict:
    """A second driver on the finished study, asked for `more` trials: it must continue the study (its trials
    numbered after the first run's), and the study must read back whole."""
    before = len(load_existing(cfg.study.storage_url, cfg.study.name).trials)
    cfg2 = cfg.model_copy(update={"study": cfg.study.model_copy(update={"n_trials": cfg.study.n_trials + more})})
    summary = Driver(cfg2, executor=InstantExecutor(seed=1)).run()
    after = load_existing(cfg.study.storage_url, cfg.study.name).trials
    ok = len(after) == before + more and [t.number for t in after] == list(range(len(after)))
    return {"resume": "yes" if ok and summary.complete == cfg2.study.n_trials else f"no ({before} → {len(after)})"}


STORAGE_METHODS = [m for m in vars(optuna.storages.BaseStorage) if not m.startswith("_") and m != "remove_session"]


def profile(storage_name: str, url: str, trials: int, out: Path) -> tuple[list[dict], list[dict]]:
    """One driver run of `trials` under cProfile, with every call on the study's storage object counted and
    timed: (storage calls per trial by method, the functions the main thread spent the most time in)."""
    cfg = config(out, url, "random", trials)
    driver = Driver(cfg, executor=InstantExecutor())
    storage = storage_of(driver.study)
    calls: dict[str, list[float]] = {}

    def timed(name: str, method):
        def call(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                other = threading.current_thread() is not threading.main_thread()  # heartbeats
                calls.setdefault(f"{name} (heartbeat thread)" if other else name, []).append(time.perf_counter() - t0)

        return call

    for name in STORAGE_METHODS:  # on the instance: isinstance and `_backend` still see the storage itself
        if hasattr(storage, name):
            setattr(storage, name, timed(name, getattr(storage, name)))
    import hqsearch.driver

    batched = hqsearch.driver.set_user_attrs  # one transaction for several attributes on a database
    if rdb_backend(storage) is not None:  # elsewhere: one by one
        hqsearch.driver.set_user_attrs = timed("set_user_attrs (hqsearch: several in one transaction)", batched)
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    try:
        prof.enable()
        assert driver.run().complete == trials
        prof.disable()
    finally:
        hqsearch.driver.set_user_attrs = batched
    wall = time.perf_counter() - t0
    in_storage = sum(sum(v) for v in calls.values())
    rows = [
        {
            "storage": storage_name,
            "call": name,
            "calls_per_trial": round(len(v) / trials, 2),
            "ms_per_call": round(1000 * sum(v) / len(v), 2),
            "ms_per_trial": round(1000 * sum(v) / trials, 2),
        }
        for name, v in sorted(calls.items(), key=lambda kv: -sum(kv[1]))
    ]
    rows.append(
        {
            "storage": storage_name,
            "call": "all storage calls",
            "calls_per_trial": round(sum(len(v) for v in calls.values()) / trials, 2),
            "ms_per_call": None,
            "ms_per_trial": round(1000 * in_storage / trials, 2),
        }
    )
    rows.append(
        {
            "storage": storage_name,
            "call": "the whole run (profiled)",
            "calls_per_trial": None,
            "ms_per_call": None,
            "ms_per_trial": round(1000 * wall / trials, 2),
        }
    )
    stats = pstats.Stats(prof)
    top = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:12]  # by own time
    hot = [
        {
            "storage": storage_name,
            "function": f"{Path(fn).name}:{line} {func}" if fn != "~" else func,
            "own_ms_per_trial": round(1000 * tt / trials, 2),
            "calls_per_trial": round(nc / trials, 1),
        }
        for (fn, line, func), (_, nc, tt, _, _) in top
    ]
    return rows, hot


def sampler_times(cfg: StudyConfig, trials: int) -> list[dict]:
    """Each sampler's seconds per ask on in-memory copies of the finished study, cut to each size."""
    source = optuna.load_study(study_name=cfg.study.name, storage=make_storage(cfg.study.storage_url))
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
    ap.add_argument("--storages", nargs="+", choices=list(STORAGES), default=list(STORAGES))
    ap.add_argument("--no-samplers", action="store_true", help="keep driver_scale_samplers.csv of an earlier run")
    ap.add_argument("--profile", type=int, default=0, metavar="N", help="also N trials per storage under cProfile")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--report-only", action="store_true", help="rewrite the Markdown from the last run's CSVs")
    args = ap.parse_args()
    if args.report_only:
        report(args.out)
        return
    meta = provenance()
    rows, checks, calls, hot, samplers = [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp, postgres_server.temporary_server() as pg:
        for name in args.storages:
            with storage_url(name, tmp, pg) as url:
                found, cfg, whole = bookkeeping(name, url, args.trials, Path(tmp) / folder(name))
                rows += found
                checks.append({"storage": name, "all_trials": whole, **resumes(cfg, 20)})
                checks[-1]["optuna_dashboard"] = dashboard_reads(name, cfg)
                print(json.dumps(checks[-1]), flush=True)
                if name == "sqlite" and not args.no_samplers:
                    samplers = sampler_times(cfg, args.trials)
        if args.profile:
            for name in args.storages:
                with storage_url(name, tmp, pg) as url:  # studies of their own (named after their folders)
                    c, h = profile(name, url, args.profile, Path(tmp) / f"profile_{folder(name)}")
                    calls += c
                    hot += h
    args.out.mkdir(parents=True, exist_ok=True)
    book = pd.DataFrame(rows)
    book.to_csv(args.out / "driver_scale.csv", index=False)
    meta["sampler_table"] = "this run" if samplers else "an earlier run (--no-samplers)"
    if samplers:
        asks = pd.DataFrame(samplers).pivot(index="study_size", columns="sampler")
        asks.columns = [f"{s}_ms_per_ask" for _, s in asks.columns]
        asks.reset_index().to_csv(args.out / "driver_scale_samplers.csv", index=False)
    summary = book.groupby("storage", sort=False).agg(
        first_window=("bookkeeping_trials_per_s", "first"), last_window=("bookkeeping_trials_per_s", "last")
    )
    summary = summary.reset_index().merge(pd.DataFrame(checks), on="storage")
    summary.to_csv(args.out / "driver_scale_storages.csv", index=False)
    if args.profile:
        pd.DataFrame(calls).assign(trials=args.profile).to_csv(args.out / "driver_scale_profile_calls.csv", index=False)
        pd.DataFrame(hot).to_csv(args.out / "driver_scale_profile_hot.csv", index=False)
    (args.out / "driver_scale.meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    report(args.out)


GOAL = 100  # bookkeeping trials/s at 2,000 trials, for the storage recommended on a cluster


def verdict(summary: pd.DataFrame, book: pd.DataFrame) -> str:
    """The recommendation: the fastest storage over the whole run that a second driver resumes and
    optuna-dashboard reads, against the goal and against PostgreSQL."""
    fit = summary[(summary.resume == "yes") & (summary.optuna_dashboard == "yes")]
    if fit.empty:
        return "No storage both resumed and was read by optuna-dashboard in this run.\n"
    best = fit.loc[fit.all_trials.idxmax()]
    rate = dict(zip(summary.storage, summary.all_trials, strict=True))
    last = book[book.storage == best.storage].iloc[-1]
    text = (
        f"**Recommended: {best.storage}**, the fastest here that a second driver resumes and optuna-dashboard "
        f"reads: {best.all_trials:g} bookkeeping trials/s over all its trials ({last.bookkeeping_trials_per_s:g} "
        f"in trials {last.trials})"
    )
    if "postgresql" in rate:
        text += f", {best.all_trials / rate['postgresql']:.1f}× PostgreSQL's {rate['postgresql']:g}"
    text += "; " + (
        f"at or above the goal of {GOAL}."
        if best.all_trials >= GOAL and last.bookkeeping_trials_per_s >= GOAL
        else f"short of the goal of {GOAL} by {GOAL - min(best.all_trials, last.bookkeeping_trials_per_s):.0f} "
        f"trials/s (×{GOAL / min(best.all_trials, last.bookkeeping_trials_per_s):.1f})."
    )
    return text + "\n\n" + "\n".join(f"- {name}: {rate[name]:g} trials/s" for name in rate) + "\n"


WHY = """\
Why (`driver_scale_profile.md`, `--profile`): a trial is about 24 calls on the storage (`create_new_trial`,
3-4 `set_trial_param`, 2 `set_trial_system_attr`, 12 user attributes, 1-2 `set_trial_state_values`, reads);
15 on a database, where the driver writes a trial's user attributes in a few transactions.
On PostgreSQL and SQLite each write is a transaction through SQLAlchemy's ORM, so each costs a commit
(`fsync` on the server's disk, or SQLite's) plus a few ms of ORM work; with `synchronous_commit` off the
commit wait goes, the ORM work stays. The gRPC proxy answers reads from its cache but passes every write on
as the same RDB transaction, one network round trip more, and the driver's batched user attributes (one
transaction on a database) become one call per attribute: it is no faster than PostgreSQL itself. The
journal file appends one JSON line per write under a lock (an `fsync` each: about 20 per trial) and reads
only the lines it has not seen: no ORM, no server, no round trip. Its `fsync`s follow the disk (in an
earlier run, with other work writing to the same disk, its first 500 trials were 4× slower than its last).
Under the profiler about half of a journal trial's time is the storage, most of it the 12 user attributes
written one `fsync` each, and half the driver's own work (front, ledger, artifacts), so it runs near, not
above, 100 trials/s on this machine. What would take it past is fewer writes per trial (a trial's
attributes in one append), which Optuna's storage API has no call for: the journal's own entries hold one
attribute each, and writing them in one append would use Optuna's private journal internals.

Where it fits: a journal file has one log that every writer appends to under its lock
(`journal:///path`, the `open(2)` lock, which works on NFS); here one driver writes it, as in a study run by
one driver with many Ray workers (the workers never touch the storage). Several drivers on one journal file
on NFS take turns for the lock; PostgreSQL stays the storage for many drivers. `optuna-dashboard
path/to/study.log` reads the file (its own lock is the symlink lock: open it read-only in practice, or use
`hqsearch dashboard`, which opens it with the same lock as the driver).
"""


def report(out: Path) -> None:
    """driver_scale.md (and driver_scale_profile.md) from the CSVs and the meta.json of the last run."""
    meta = json.loads((out / "driver_scale.meta.json").read_text())
    book = pd.read_csv(out / "driver_scale.csv")
    summary = pd.read_csv(out / "driver_scale_storages.csv")
    asks = pd.read_csv(out / "driver_scale_samplers.csv")
    trials = int(book.trials.str.split("-").str[1].astype(int).max())
    note = write_provenance(out, "driver_scale", meta)
    note += (
        f"{trials} instant trials per storage, 16 in flight, random sampler; otherwise the default study. "
        "All storages measured side by side in one run on a 2-core machine whose disk other work may share "
        "(`fsync` times then vary): compare the storages by their ratios; the absolute numbers are this "
        "machine's on that day.\n\n"
    )
    note += "## Recommendation\n\n" + verdict(summary, book) + "\n" + WHY + "\n"
    note += (
        "## Bookkeeping trials/s by storage\n\n`all_trials`: over the whole run; `resume`: a second driver "
        "asked for 20 more trials continues the study (numbers follow on, all trials read back); "
        "`optuna_dashboard`: optuna-dashboard's API lists the study with all its trials (a journal file opened "
        "from its path, as `optuna-dashboard study.log` opens it).\n\n" + markdown(summary) + "\n\n"
    )
    note += "## Bookkeeping per trial (the sampler's time taken out)\n\n" + markdown(book) + "\n\n"
    from_run = meta.get("sampler_table", "this run")
    note += "## Each sampler's time per ask, by study size\n\n"
    if from_run != "this run":
        note += f"From {from_run}: driver_scale_samplers.csv as it was.\n\n"
    note += markdown(asks) + "\n"
    (out / "driver_scale.md").write_text(note)
    print(note)
    if (out / "driver_scale_profile_calls.csv").exists():
        calls = pd.read_csv(out / "driver_scale_profile_calls.csv")
        n = int(calls.pop("trials").iloc[0])
        prof = (
            f"# Where the driver's time goes per trial ({n} trials per storage, under cProfile)\n\n"
            "Each call on the study's storage object, counted and timed (with the profiler on: slower than "
            "driver_scale.md's runs; `all storage calls` and `the whole run` are ms per trial).\n\n"
            + markdown(calls)
            + "\n\n## The functions the driver's thread spent most of its own time in\n\n"
            + markdown(pd.read_csv(out / "driver_scale_profile_hot.csv"))
            + "\n"
        )
        (out / "driver_scale_profile.md").write_text(prof)


if __name__ == "__main__":
    main()
