"""`hqsearch run | check | status | report | compare | import | export | synth | dashboard`: the command line."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import get_args

from rich.console import Console
from rich.table import Table

from hqsearch.config.metrics import METRICS
from hqsearch.config.schema import Backend, StudyConfig, SynthesisSection, hls4ml_choices, load_config
from hqsearch.exceptions import ConfigError, DataNotHere, HQSearchError, ToolNotHere
from hqsearch.search.space import opening_ramp

console = Console()
if not console.is_terminal:  # files and pipes get full rows instead of 80-column wrapping
    console = Console(width=200)
err_console = Console(stderr=True, soft_wrap=True)

# Columns of the front table on screen; everything else goes to the files.
_SHOWN = [
    *(m.name for m in METRICS.values() if m.shown),
    "mismatches",
    "param_beta",
    "param_weights",
    "param_activations",
]


def _study_args(p: argparse.ArgumentParser, config_required: bool) -> None:
    p.add_argument("config", nargs=None if config_required else "?", type=Path, help="study YAML")
    p.add_argument("--storage", help="Optuna storage URL (overrides the config's study.storage)")
    if not config_required:
        p.add_argument("--study", help="study name, with --storage and no config")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="hqsearch", description="Accuracy vs FPGA cost search for HGQ2 networks.")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run (or continue) a study until it has n_trials trainings or spent its budget")
    _study_args(p, config_required=True)
    p.add_argument("--n-trials", type=int, help="COMPLETE trainings to reach (overrides study.n_trials)")
    p.add_argument(
        "--budget", type=int, help="training epochs to spend, all trainings together (overrides study.budget)"
    )
    p.add_argument("--no-progress", action="store_true", help="plain log lines instead of a progress bar")

    p = sub.add_parser("check", help="validate a config and print the HGQ advice that applies to it")
    p.add_argument("config", type=Path)

    p = sub.add_parser("status", help="how far a study is")
    _study_args(p, config_required=False)

    p = sub.add_parser("report", help="rank the Pareto front; write CSV, Parquet and a plot")
    _study_args(p, config_required=False)
    p.add_argument("--out", type=Path, help="output folder (default: <output_dir>/report)")
    p.add_argument("--sort", metavar="METRIC", help="rank the front by this metric instead of the objectives")

    p = sub.add_parser(
        "compare", help="studies side by side: trainings, epochs, front and hypervolume at one reference"
    )
    p.add_argument("studies", nargs="+", metavar="CONFIG_OR_STORAGE", help="study YAML, or storage URL[#study]")
    p.add_argument("--out", type=Path, default=Path("runs") / "compare", help="folder for compare.csv and compare.png")

    p = sub.add_parser("import", help="evaluate existing HGQ2 checkpoints into a study, as points of its own")
    _study_args(p, config_required=True)
    p.add_argument("models", nargs="+", type=Path, metavar="MODEL_OR_FOLDER", help=".keras files or folders of them")

    p = sub.add_parser("export", help="write one point as a project: model, firmware, metrics.json, README")
    _study_args(p, config_required=False)
    p.add_argument("--trial", type=int, required=True, help="the point's trial number (report and dashboard show it)")
    p.add_argument("--out", type=Path, help="a new or empty folder (default: <output_dir>/export/trial_NNNNN)")

    p = sub.add_parser("dashboard", help="serve optuna-dashboard on the study's storage, with its artifacts")
    p.add_argument("config", type=Path)
    p.add_argument("--storage", help="Optuna storage URL (overrides the config's study.storage)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: localhost only)")
    p.add_argument("--port", type=int, default=8080)

    p = sub.add_parser("synth", help="measure a trained HGQ2 model (.keras) without a study")
    p.add_argument("model", type=Path, help="a saved HGQ2 model, calibrated (trace_minmax) before saving")
    p.add_argument("--backend", default="yosys", choices=sorted(get_args(Backend)))
    defaults = SynthesisSection()
    p.add_argument("--part", default=defaults.part)
    p.add_argument("--clock", type=float, default=defaults.clock_period, help="clock period in ns")
    p.add_argument("--latency-cutoff", type=float, default=defaults.latency_cutoff)
    p.add_argument("--yosys", default="auto", choices=["auto", "native", "yowasp"])
    p.add_argument("--out", type=Path, help="build folder (default: a temporary one)")
    p.add_argument("--timeout", type=float, help="seconds before the synthesis tool is killed")
    p.add_argument("--no-cache", action="store_true", help="synthesise even when the design cache has it")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return ap


def _config(args: argparse.Namespace) -> StudyConfig:
    cfg = load_config(args.config)
    for flag in ("n_trials", "budget"):
        if getattr(args, flag, None) is not None and getattr(args, flag) < 1:
            raise ConfigError(f"--{flag.replace('_', '-')} must be at least 1")
    n_trials, budget = getattr(args, "n_trials", None), getattr(args, "budget", None)
    return cfg.with_overrides(n_trials=n_trials, budget=budget, storage=args.storage)


def _open(args: argparse.Namespace):
    """The study named by a config, or by --storage and --study; its run folder; the config if one was given."""
    from hqsearch.study.storage import load_existing

    if args.config is not None:
        cfg = _config(args)
        return load_existing(cfg.study.storage_url, cfg.study.name), cfg.study.run_dir, cfg
    if not (args.storage and args.study):
        raise ConfigError("give a study config, or both --storage URL and --study NAME")
    return load_existing(args.storage, args.study), Path("runs") / args.study, None


def _print_advice(cfg: StudyConfig) -> None:
    from hqsearch.pipeline.advice import advise

    for a in advise(cfg):
        style = "yellow" if a.level == "warning" else "cyan"
        console.print(f"[{style}]{a}[/{style}]")


def cmd_run(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from hqsearch.driver import Progress as RunProgress
    from hqsearch.driver import run_study
    from hqsearch.pipeline.preflight import check_folders
    from hqsearch.study.storage import shown_url

    cfg = _config(args)
    check_folders(cfg)
    _print_advice(cfg)
    console.print(
        f"study [bold]{cfg.study.name}[/bold] in {shown_url(cfg.study.storage_url)}, target {_target(cfg)}, "
        f"backend {cfg.synthesis.backend}, Keras on {cfg.execution.keras_backend}"
    )
    by_epochs = cfg.study.budget is not None  # the bar counts what ends the study

    def fields(p: RunProgress) -> dict:
        return {
            "completed": p.epochs if by_epochs else p.complete,
            "running": p.running,
            "failed": p.failed,
            "front": p.front,
            "cache_hits": p.cache_hits,
        }

    if args.no_progress or not console.is_terminal:
        last: list = [None]

        def on_progress(p: RunProgress) -> None:
            line = f"trainings {p.complete}" + (f"/{p.target}" if p.target else "")
            line += f"  epochs {p.epochs}" + (f"/{p.budget}" if p.budget else "")
            line += f"  running {p.running}  failed {p.failed}  front {p.front}"
            line += f"  cache hits {p.cache_hits}" if p.cache_hits else ""
            if line != last[0]:
                console.print(line)
                last[0] = line

        summary = run_study(cfg, on_progress)
    else:
        columns = [
            TextColumn("epochs" if by_epochs else "trainings"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(
                "running {task.fields[running]}  failed {task.fields[failed]}  front {task.fields[front]}"
                "  cache hits {task.fields[cache_hits]}"
            ),
            TimeElapsedColumn(),
        ]
        with Progress(*columns, console=console) as bar:
            total = cfg.study.budget if by_epochs else cfg.study.n_trials
            task = bar.add_task("trials", total=total, running=0, failed=0, front=0, cache_hits=0)
            summary = run_study(cfg, lambda p: bar.update(task, **fields(p)))

    console.print(
        f"{summary.complete} COMPLETE trainings ({summary.epochs} epochs) in study {summary.study_name} "
        f"({summary.harvested} harvested candidates, {summary.failed_this_run} failed, "
        f"{summary.cache_hits} design cache hits in this run)"
    )
    if summary.measured_later:
        console.print(f"{summary.measured_later} points told with their estimate were synthesised later in this run")
    if summary.recovered:
        console.print(f"re-enqueued trials lost by a driver that died: {', '.join(map(str, summary.recovered))}")
    if summary.stopped_because:
        console.print(f"[yellow]stopped: {summary.stopped_because}[/yellow]")
    console.print(f"next: hqsearch report {args.config}")
    if summary.terminated:
        return 143  # what a shell reports for a command SIGTERM ended (128 + 15)
    if summary.interrupted:
        return 130  # what a shell reports for Ctrl-C, as every other command's KeyboardInterrupt
    return 0 if summary.reached(cfg.study) else 1


def _target(cfg) -> str:
    s = cfg.study
    parts = ([f"{s.n_trials} COMPLETE trainings"] if s.n_trials else []) + (
        [f"{s.budget} training epochs"] if s.budget else []
    )
    return " or ".join(parts)


def cmd_check(args: argparse.Namespace) -> int:
    from hqsearch.pipeline.advice import advise
    from hqsearch.pipeline.preflight import (
        TOOLS,
        check_firmware_tools,
        check_folders,
        check_synth_tools,
        preflight,
        ray_address_problem,
    )
    from hqsearch.study.storage import shown_url

    cfg = load_config(args.config)
    check_folders(cfg)
    on_ray = cfg.execution.executor == "ray"
    try:  # a Ray study's tools are on its nodes: what is missing here is a warning, and `run` checks there
        checked = str(preflight(cfg, tools=() if on_ray else TOOLS))
    except DataNotHere as err:  # a valid config whose data lives elsewhere; `run` refuses until it is here
        checked = f"[yellow]warning:[/yellow] {err} here; the data and model were not checked, and run refuses to start"
    if on_ray:
        for find in (check_firmware_tools, check_synth_tools):
            try:
                find(cfg)
            except ToolNotHere as err:
                checked += f"\n[yellow]warning:[/yellow] {err}; run looks for it on the Ray nodes"
        if problem := ray_address_problem(cfg.execution.ray.address):
            err = cfg.error("execution.ray.address", problem)
            checked += f"\n[yellow]warning:[/yellow] {err} from here; run refuses to start"
    s = cfg.study
    console.print(
        f"[green]ok[/green] {args.config}: study {s.name!r}, {_target(cfg)} "
        f"({_epochs(cfg)} epochs, up to {cfg.training.harvest.max_candidates} harvested candidates each), "
        f"sampler {s.sampler}, "
        f"objectives {', '.join(f'{m} ({d})' for m, d in s.objectives.items())}"
    )
    if s.constraints:
        console.print("constraints: " + ", ".join(f"{c.metric} {c.op} {c.bound:g}" for c in s.constraints))
    console.print("search: " + _search_shape(cfg))
    console.print(
        f"storage {shown_url(s.storage_url)}; data {cfg.data.source}; model {cfg.model.kind}; "
        f"backend {cfg.synthesis.backend} ({_hls4ml_shown(cfg)})"
        + ("" if cfg.synthesis.backend == "estimate" else f", fidelity {cfg.synthesis.fidelity}")
    )
    _print_advice(cfg)
    if not advise(cfg):
        console.print("no HGQ advice applies")
    console.print(checked)
    return 0


def _hls4ml_shown(cfg: StudyConfig) -> str:
    """The hls4ml settings a trial can take, searched ones as `a | b`."""
    c = hls4ml_choices(cfg)
    return ", ".join(" | ".join(map(str, c[k])) for k in ("strategy", "io_type")) + (
        f", reuse factor {' | '.join(map(str, c['reuse_factor']))}" if c["reuse_factor"] != [1] else ""
    )


def _search_shape(cfg) -> str:
    """How the trainings spend their epochs: the beta range and schedule, and when they continue a point."""

    def span(v, unit: float = 1.0, fmt: str = "g") -> str:
        return f"{v.low * unit:{fmt}} to {v.high * unit:{fmt}}" if hasattr(v, "low") else f"{v * unit:{fmt}}"

    t, space = cfg.training, cfg.search_space
    beta = span(space.beta) + (" (log)" if getattr(space.beta, "log", False) else "")
    if t.beta_schedule == "ramp":
        ramp = space.ramp
        shape = (
            f"beta {beta}, each training a log ramp to its beta from {span(ramp.start)} of the way up from "
            f"beta's low end, held for {span(ramp.hold, 100, '.0f')} % of its epochs first"
        )
        if ramp.opening and opening_ramp(cfg):
            shape += f"; the first {ramp.opening} trainings the authors' ramp, from the range's low end to its top"
    else:
        shape = f"beta {beta}, {t.beta_schedule} schedule"
    c = t.continuation
    if c.share <= 0:
        shape += "; every training fresh"
    else:
        shape += (
            f"; after {c.startup} fresh trainings, {c.share:.0%} continue the point above the front's widest "
            "gap, with a ramp through it"
            + (" (a share that moves toward the kind that adds more hypervolume per epoch)" if c.adapt else "")
        )
    if t.stopping.behind_front:
        shape += (
            f"; a training stops once further behind the front than any of its kind closed later "
            f"(learned from {t.stopping.learn_from} of them)"
        )
    return shape


def _epochs(cfg) -> str:
    e = cfg.search_space.epochs
    return f"{e.low}-{e.high}" if e is not None and not isinstance(e, int) else str(e or cfg.training.epochs)


def cmd_status(args: argparse.Namespace) -> int:
    import optuna
    from optuna.trial import TrialState

    from hqsearch.search.fidelity import syntheses
    from hqsearch.search.front import measured_front
    from hqsearch.study.points import Origin, origin, trainings_done
    from hqsearch.study.storage import study_config

    study, _, cfg = _open(args)
    counts = {s.name: 0 for s in TrialState}
    points = {o: 0 for o in Origin}
    trials = study.get_trials(deepcopy=False)
    maximise = [d == optuna.study.StudyDirection.MAXIMIZE for d in study.directions]
    for t in trials:
        counts[t.state.name] += 1
        if t.state == TrialState.COMPLETE:
            points[origin(t)] += 1
    section = cfg.study.model_dump() if cfg is not None else (study_config(study).get("study") or {})
    target, budget = section.get("n_trials"), section.get("budget")
    others = f" + {points[Origin.HARVEST]} harvested candidates"
    others += f" + {points[Origin.IMPORT]} imported" if points[Origin.IMPORT] else ""
    trainings = f"{points[Origin.TRAINING]}" + (f"/{target}" if target else "")
    epochs = f"{trainings_done(study)[1]}" + (f"/{budget}" if budget else "")
    others += f" + {points[Origin.SYNTHESIS]} measured later" if points[Origin.SYNTHESIS] else ""
    console.print(
        f"study {study.study_name}: {trainings} trainings COMPLETE{others}, {epochs} training epochs, "
        f"{counts['RUNNING']} running, {counts['FAIL']} failed, {counts['WAITING']} waiting; "
        f"front {len(measured_front(trials, maximise))} points"
    )
    if (done := syntheses(trials)).run or done.skipped:
        console.print(str(done))
    return 0


def _origin_cell(row) -> str:
    """Where a front point came from: a fresh training, an epoch of one (`#3 e27`), an imported file, or
    its lineage through the points that trainings continued (`#12 e7 ← #5 ← #3 e27`)."""
    chain = row.get("lineage") or ""
    cell = "training" if row.get("origin") == "training" and "←" not in chain else chain or str(row.get("origin"))
    return cell if row.get("synthesised", True) else f"{cell} (not synthesised)"


def _front_table(front, names: list[str]) -> Table:
    table = Table(title="Pareto front (feasible, non-dominated), ranked", show_lines=False)
    cols = ["rank", "trial", "from", *dict.fromkeys(names + [c for c in _SHOWN if c in front.columns])]
    if "accuracy" in cols and "test_accuracy" in cols:  # the reported test figure beside the chosen one
        cols.remove("test_accuracy")
        cols.insert(cols.index("accuracy") + 1, "test_accuracy")
    for c in cols:
        table.add_column(
            c.removeprefix("param_"),
            justify="right" if c not in ("from", "param_weights", "param_activations") else "left",
        )
    for _, row in front.iterrows():
        cells = []
        for c in cols:
            v = _origin_cell(row) if c == "from" else row.get(c)
            if isinstance(v, float):
                cells.append(f"{v:.4f}" if c.endswith("accuracy") else f"{v:.3g}" if c == "param_beta" else f"{v:,.0f}")
            else:
                cells.append(str(v))
        table.add_row(*cells)
    return table


def cmd_report(args: argparse.Namespace) -> int:
    from hqsearch.analysis.pareto import objective_names
    from hqsearch.analysis.report import write_report

    study, run_dir, cfg = _open(args)
    try:
        report = write_report(study, args.out or run_dir / "report", args.sort, cfg)
    except KeyError as err:
        raise ConfigError(f"--sort: {err.args[0]}") from None
    if report.front.empty:
        console.print("[yellow]no COMPLETE feasible trials yet: the front is empty[/yellow]")
    else:
        console.print(_front_table(report.front, objective_names(study)))
        src = report.front.get("luts_source")
        if src is not None:
            console.print(f"LUTs from: {', '.join(sorted(set(src.dropna())))}")
    if report.syntheses.run or report.syntheses.skipped:
        console.print(str(report.syntheses))
    for fit in report.fits:
        console.print(str(fit))
    _print_score(report.score)
    for f in report.files:
        console.print(f"wrote {f}")
    return 0


def _print_score(s) -> None:
    test = f", {s.test_hypervolume:.4g} on the test split" if s.test_hypervolume is not None else ""
    console.print(f"hypervolume {s.hypervolume:.4g} (front chosen on the validation split){test}")
    console.print(f"  measured in: {s.scale}", highlight=False)
    extra = f", {s.imported} imported" if s.imported else ""
    console.print(f"  from {s.trainings} trainings ({s.epochs:,} epochs), {s.harvested} harvested candidates{extra}")


def cmd_compare(args: argparse.Namespace) -> int:
    from hqsearch.analysis.compare import compare

    result = compare(args.studies, args.out)
    table = Table(title="studies compared (each front chosen on its validation split)")
    for col in result.table.columns:
        table.add_column(col, justify="left" if col == "study" else "right")
    for row in result.table.to_dict("records"):
        table.add_row(*(_cell(col, v) for col, v in row.items()))
    console.print(table)
    console.print(f"hypervolume measured in: {result.scale}", highlight=False)
    for f in result.files:
        console.print(f"wrote {f}")
    return 0


def _cell(col: str, v) -> str:
    if v is None or (isinstance(v, float) and v != v):  # absent, or NaN
        return "-"
    if "hypervolume" in col:
        return f"{v:.4f}"
    return f"{v:,.0f}" if isinstance(v, int | float) else str(v)


def cmd_import(args: argparse.Namespace) -> int:
    from hqsearch.pipeline.checkpoints import import_checkpoints
    from hqsearch.pipeline.preflight import check_folders

    cfg = _config(args)
    check_folders(cfg)

    def show(i) -> None:
        shown = {"added": f"trial {i.number}: {i.note}", "present": i.note, "failed": f"[red]failed:[/red] {i.note}"}
        console.print(f"{i.source}  {shown[i.status]}", highlight=False)

    results = import_checkpoints(cfg, args.models, on_point=show)
    n = {status: sum(i.status == status for i in results) for status in ("added", "present", "failed")}
    console.print(
        f"{n['added']} imported into study {cfg.study.name}, {n['present']} already there, {n['failed']} failed"
    )
    return 1 if n["failed"] else 0


def cmd_synth(args: argparse.Namespace) -> int:
    from hqsearch.keras_backend import DEFAULT
    from hqsearch.pipeline.preflight import import_keras_quietly

    import_keras_quietly(os.environ.get("KERAS_BACKEND", DEFAULT))  # no study: the environment's, else ours
    from hqsearch.backends import build_design, measure
    from hqsearch.pipeline.train import saved_ebops

    try:
        syn = SynthesisSection(
            backend=args.backend,
            part=args.part,
            clock_period=args.clock,
            latency_cutoff=args.latency_cutoff,
            yosys=args.yosys,
            cache=not args.no_cache,
        )
    except ValueError as err:
        raise ConfigError(f"hqsearch synth: {err}") from None
    model = _load_model(args.model)
    with tempfile.TemporaryDirectory(prefix="hqsearch-synth-") as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        design = build_design(model, saved_ebops(model), syn, out)
        design = replace(design, ebops_source="saved with the model (last calibration)")
        result = measure(design, syn, out, timeout=args.timeout)
    doc = {
        "model": str(args.model),
        "backend": syn.backend,
        "tool": result.tool,
        "cache_hit": result.cache_hit,
        **result.metrics,
        "sources": result.sources,
    }
    if args.json:
        print(json.dumps(doc))
        return 0
    table = Table(title=f"{args.model} on {syn.part} at {syn.clock_period:g} ns")
    for col in ("metric", "value", "source"):
        table.add_column(col)
    for k, v in result.metrics.items():
        table.add_row(k, f"{v:,.6g}", result.sources.get(k, ""))
    console.print(table)
    if result.cache_hit:
        console.print("from the design cache (identical design synthesised before)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from hqsearch.analysis.export import export_point
    from hqsearch.pipeline.preflight import import_keras_quietly
    from hqsearch.study.storage import stored_config

    study, _, cfg = _open(args)
    cfg = cfg if cfg is not None else stored_config(study, storage=args.storage)
    import_keras_quietly(cfg.execution.keras_backend)
    out = args.out or cfg.study.run_dir / "export" / f"trial_{args.trial:05d}"
    done = export_point(study, cfg, args.trial, out)
    console.print(f"exported trial {args.trial} of study {study.study_name} to {out}", highlight=False)
    style = "yellow" if done.rebuilt else "green"
    console.print(f"[{style}]firmware {done.firmware.name}/: {done.firmware_from}[/{style}]", highlight=False)
    if done.estimate_check:
        console.print(done.estimate_check, highlight=False)
    if done.estimated:
        console.print(f"[yellow]note: {done.estimated}[/yellow]", highlight=False)
    console.print("wrote " + ", ".join(f.name for f in done.files) + f", {done.firmware.name}/", highlight=False)
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from optuna_dashboard import run_server

    from hqsearch.study.storage import artifact_store, make_storage, shown_url

    cfg = _config(args)
    storage = make_storage(cfg.study.storage_url)  # an unreachable storage is one error, before the URL is shown
    host = f"[{args.host}]" if ":" in args.host else args.host
    console.print(f"optuna-dashboard for {shown_url(cfg.study.storage_url)} (artifacts: {cfg.study.artifact_path})")
    console.print(f"open http://{host}:{args.port}/dashboard", highlight=False)
    interrupted: list[int] = []

    def on_sigint(signum: int, frame) -> None:  # noqa: ARG001
        interrupted.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        run_server(storage, host=args.host, port=args.port, artifact_store=artifact_store(cfg))
    finally:
        signal.signal(signal.SIGINT, previous)
    if interrupted:  # bottle ends its server on Ctrl-C and returns: the command ends as any command Ctrl-C stops
        raise KeyboardInterrupt
    return 0


def _load_model(path: Path):
    from hqsearch.firmware.emulate import load_model

    if not path.is_file():
        raise ConfigError(f"{path}: no such model file")
    try:
        return load_model(path)
    except Exception as err:  # Keras raises many types for a file it cannot read
        raise ConfigError(f"{path}: cannot load as a Keras model ({type(err).__name__}: {str(err)[:200]})") from None


_COMMANDS = {
    "run": cmd_run,
    "check": cmd_check,
    "status": cmd_status,
    "report": cmd_report,
    "synth": cmd_synth,
    "compare": cmd_compare,
    "import": cmd_import,
    "export": cmd_export,
    "dashboard": cmd_dashboard,
}


INTERRUPTED = 130  # what a shell reports for a command ended by SIGINT (128 + 2)


def main(argv: list[str] | None = None) -> int:
    """Run one command; a user's error is one line and exit code 2, Ctrl-C one line and 130.

    `run` handles Ctrl-C itself while its trials run; a KeyboardInterrupt that reaches here came before
    or after that, or from another command."""
    try:
        args = _parser().parse_args(argv)
        return _COMMANDS[args.command](args)
    except HQSearchError as err:
        err_console.print(f"[red]error:[/red] {err}", highlight=False)
        return 2
    except KeyboardInterrupt:
        err_console.print("interrupted", highlight=False)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
