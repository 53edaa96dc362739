"""Multi-fidelity synthesis: `fidelity: front` against `all` on the same trained candidates.

One digits study (`studies/digits.yaml`, harvest and continuation on, a smaller epoch budget) is trained
once with the estimate backend, so both modes see the very same designs in the same order: each
training's final model, then its harvested epochs, training by training. Each mode then takes them
through the study's own synthesis stage (`trial.synth_stage`, as a worker runs it) with Yosys:

  all    every design is synthesised
  front  each training's designs go through the gate the driver hands to a training when it starts
         (`fidelity.gate`: every design measured before it), which grows with the training's own
         measurements; once the trainings are done, the deferred designs that can still reach the
         measured front are measured `max_concurrent` at a time, most worth measuring first, judged
         again before each round (`Gate.order`), as the driver does

`all` runs first, on an empty design cache; `front` then finds every design it synthesises in that
cache (Yosys is deterministic), so its synthesis time is what `all` measured for those designs.

Reported: syntheses run, skipped and done later; the synthesis stages' time; the measured front's
hypervolume (accuracy above 0.8 × log10 LUTs below 40,000, Yosys LUTs, the front chosen on the
validation split, scored on validation and test), for both modes from the same run.

    python benchmarks/multifidelity.py [--budget 560] [--jobs 2] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import copy
import multiprocessing as mp
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd
import yaml
from provenance import ROOT, provenance
from provenance import write as write_provenance
from tables import markdown

from hqsearch.backends.estimate import ESTIMATED
from hqsearch.config.schema import StudyConfig, parse_config
from hqsearch.driver import run_study
from hqsearch.pipeline.trial import Trained, TrialOutcome, synth_later, synth_stage
from hqsearch.search.fidelity import Gate, empty_gate
from hqsearch.search.hypervolume import resolve, scores
from hqsearch.study.attrs import PARENT_ATTR, SKIPPED_ATTR_KEY
from hqsearch.study.points import Origin, origin
from hqsearch.study.storage import load_existing

EMULATED = ("accuracy", "float_accuracy", "test_accuracy", "test_float_accuracy")


@dataclass
class Candidate:
    number: int  # its point in the trained study
    training: int
    model: Path
    ebops: float
    emulated: dict[str, float]
    estimate: dict[str, float]


@dataclass
class Replay:
    mode: str
    measured: dict[int, dict[str, float]] = field(default_factory=dict)  # number -> metrics
    seconds: dict[int, float] = field(default_factory=dict)  # number -> its synthesis stage
    skipped: dict[int, str] = field(default_factory=dict)  # number -> why (while unmeasured)
    later: list[int] = field(default_factory=list)
    estimate_seconds: dict[int, float] = field(default_factory=dict)  # number -> its stage, when skipped


def trained_study(budget: int, work: Path) -> tuple[StudyConfig, list[list[Candidate]]]:
    """The digits study trained once (estimate backend); its designs grouped by training, in order."""
    raw = yaml.safe_load((ROOT / "studies" / "digits.yaml").read_text())
    raw["study"].update(name="multifidelity", budget=budget, output_dir=str(work / "study"))
    raw["synthesis"]["cache_dir"] = str(work / "design_cache")
    cfg = parse_config(copy.deepcopy(raw))
    if not (work / "study" / "study.db").exists():
        summary = run_study(cfg)
        print(f"trained: {summary.complete} trainings, {summary.epochs} epochs, {summary.harvested} harvested")
    study = load_existing(cfg.study.storage_url, cfg.study.name)
    trials = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    batches: dict[int, list[Candidate]] = {}
    for t in trials:
        kind = origin(t)
        if kind is Origin.TRAINING:
            training, model = t.number, Path(t.user_attrs["trial_dir"]) / "model.keras"
        elif kind is Origin.HARVEST:
            epoch = t.user_attrs["info"]["epoch"]
            training = t.user_attrs[PARENT_ATTR]
            model = Path(t.user_attrs["trial_dir"]) / "harvest" / f"epoch_{epoch:04d}" / f"epoch_{epoch:04d}.keras"
        else:
            continue
        m = t.user_attrs["metrics"]
        cand = Candidate(
            t.number, training, model, m["ebops"], {k: m[k] for k in EMULATED}, {k: m[k] for k in ESTIMATED}
        )
        batches.setdefault(training, []).append(cand)
    yosys = copy.deepcopy(raw)
    yosys["synthesis"].update(backend="yosys", cache=False)
    return parse_config(yosys), [batches[k] for k in sorted(batches)]


def as_trained(batch: list[Candidate], folder: Path) -> Trained:
    """A training's designs as its firmware stage hands them to synthesis, models copied into `folder`."""
    shutil.rmtree(folder, ignore_errors=True)
    designs = []
    for i, c in enumerate(batch):
        where = folder if i == 0 else folder / "harvest" / f"epoch_{c.number:04d}"
        where.mkdir(parents=True, exist_ok=True)
        path = Path(shutil.copy2(c.model, where / (c.model.name if i == 0 else f"{where.name}.keras")))
        info = {"harvest": {"errors": []}} if i == 0 else {"epoch": c.number}
        designs.append(Trained(TrialOutcome(metrics=dict(c.emulated), info=info), path, c.ebops))
    return replace(designs[0], candidates=designs[1:])


def with_fidelity(cfg: StudyConfig, mode: str, cache: Path) -> StudyConfig:
    update = {"fidelity": mode, "cache": True, "cache_dir": cache}
    return cfg.model_copy(update={"synthesis": cfg.synthesis.model_copy(update=update)})


def synth_batch(cfg: StudyConfig, batch: list[Candidate], folder: Path, gate: Gate | None) -> list[TrialOutcome]:
    """One training's synthesis stage (`trial.synth_stage`, as a worker runs it): its designs' outcomes."""
    out = synth_stage(cfg, None, as_trained(batch, folder), folder, gate=gate)
    assert not out.info["harvest"]["errors"], out.info["harvest"]["errors"]
    return [out, *out.candidates]


def measure_all(cfg: StudyConfig, batches: list[list[Candidate]], work: Path, jobs: int) -> Replay:
    """`all`: every design through Yosys, `jobs` trainings at a time (the order cannot matter)."""
    cfg = with_fidelity(cfg, "all", work / "cache")
    r = Replay("all")
    with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
        runs = {pool.submit(synth_batch, cfg, b, work / "all" / f"{b[0].number:05d}", None): b for b in batches}
        for i, future in enumerate(as_completed(runs)):
            for cand, out in zip(runs[future], future.result(), strict=True):
                assert not out.info["synth_cache_hit"], "the cache must start empty"
                r.measured[cand.number] = {**cand.emulated, **out.metrics}
                r.seconds[cand.number] = out.timings["synth"]
            print(f"all: {i + 1}/{len(batches)} trainings, {sum(r.seconds.values()):.0f} s of synthesis", flush=True)
    return r


def replay_front(cfg: StudyConfig, batches: list[list[Candidate]], work: Path, every: Replay) -> Replay:
    """`front`: each training's synthesis stage in turn with the gate the driver would hand it, then the
    driver's measurement of the deferred designs that can still reach the front (`trial.synth_later`).
    Yosys answers from the design cache that `all` filled (Yosys is deterministic: the same design gives
    the same numbers), so a design's synthesis time is the one `all` measured for it."""
    cfg = with_fidelity(cfg, "front", work / "cache")
    r = Replay("front")
    by_number = {c.number: c for batch in batches for c in batch}

    def record(cand: Candidate, out: TrialOutcome) -> None:
        if out.info.get(SKIPPED_ATTR_KEY):
            r.skipped[cand.number] = out.info[SKIPPED_ATTR_KEY]
            r.estimate_seconds[cand.number] = out.timings["synth"]  # the estimate, nothing else
        else:
            assert out.info["synth_cache_hit"] and out.metrics["luts"] == every.measured[cand.number]["luts"]
            r.measured[cand.number] = {**cand.emulated, **out.metrics}
            r.seconds[cand.number] = every.seconds[cand.number]
            r.skipped.pop(cand.number, None)

    def study_gate() -> Gate | None:
        """What `fidelity.gate` makes of the study as it stands: every design measured so far."""
        g = empty_gate(cfg)
        for number, metrics in r.measured.items() if g is not None else ():
            g.add(metrics, by_number[number].estimate, f"#{number}")
        return g

    for i, batch in enumerate(batches):
        folder = work / "front" / f"{batch[0].number:05d}"
        for cand, out in zip(batch, synth_batch(cfg, batch, folder, study_gate()), strict=True):
            record(cand, out)
        print(f"front: training {i + 1}/{len(batches)}: {len(r.measured)} measured, {len(r.skipped)} skipped")
    slots = cfg.execution.max_concurrent
    while True:  # the trainings are done: the driver measures what can still reach the front, `slots` at a time
        g = study_gate()
        waiting = [by_number[n] for n in r.skipped]
        waiting = [c for c in waiting if g.verdict({**c.emulated, "ebops": c.ebops}, c.estimate) is None]
        if not waiting:
            break
        order = g.order([({**c.emulated, "ebops": c.ebops}, c.estimate) for c in waiting])
        for cand in [waiting[j] for j in order[:slots]]:
            later = work / "front" / f"{cand.number:05d}" / "measured"
            shutil.rmtree(later, ignore_errors=True)
            later.mkdir(parents=True)
            model = Path(shutil.copy2(cand.model, later / "model.keras"))
            record(cand, synth_later(cfg, model, cand.ebops, later))
            r.later.append(cand.number)
        print(f"front: {len(r.later)} measured later, {len(waiting) - len(order[:slots])} still waiting", flush=True)
    return r


def front_scores(cfg: StudyConfig, r: Replay) -> tuple[float, float | None, int]:
    rows = [{"trial": n, **m} for n, m in r.measured.items()]
    frame = pd.DataFrame(rows)
    feasible = frame.apply(lambda row: all(v <= 0 for v in cfg.study.constraint_values(row).values()), axis=1)
    points = frame[feasible].reset_index(drop=True)
    scale = resolve(cfg.study, cfg.report.hypervolume, points)
    return scores(points, scale)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=560, help="training epochs of the study (default 560)")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "bench_multifidelity")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--jobs", type=int, default=2, help="trainings `all` synthesises at a time (default 2)")
    args = ap.parse_args()
    meta = provenance()
    cfg, batches = trained_study(args.budget, args.work)
    n = sum(len(b) for b in batches)
    print(f"{n} designs from {len(batches)} trainings", flush=True)

    shutil.rmtree(args.work / "synth", ignore_errors=True)  # an empty design cache: `all` runs Yosys on each
    t0 = time.perf_counter()
    every = measure_all(cfg, batches, args.work / "synth", args.jobs)
    print(f"all: {time.perf_counter() - t0:.0f} s wall with {args.jobs} at a time", flush=True)
    front = replay_front(cfg, batches, args.work / "synth", every)

    results, per_design = [], []
    for r in (front, every):
        hv, test_hv, size = front_scores(cfg, r)
        results.append(
            {
                "mode": r.mode,
                "designs": n,
                "syntheses": len(r.measured),
                "skipped": len(r.skipped),
                "done_later": len(r.later),
                "synth_s": round(sum(r.seconds.values()) + sum(r.estimate_seconds.values()), 1),
                "front": size,
                "hypervolume": round(hv, 5),
                "test_hypervolume": None if test_hv is None else round(test_hv, 5),
            }
        )
        for batch in batches:
            for c in batch:
                m = r.measured.get(c.number, {})
                per_design.append(
                    {
                        "mode": r.mode,
                        "point": c.number,
                        "training": c.training,
                        "accuracy": c.emulated["accuracy"],
                        "estimated_luts": c.estimate["luts"],
                        "luts": m.get("luts"),
                        "synth_s": r.seconds.get(c.number, r.estimate_seconds.get(c.number)),
                        "later": c.number in r.later,
                        "skipped_because": r.skipped.get(c.number),
                    }
                )
    table = pd.DataFrame(results)
    a = table.set_index("mode").loc["all"]
    table["syntheses_vs_all"] = (table["syntheses"] / a["syntheses"]).round(3)
    table["hypervolume_vs_all"] = (table["hypervolume"] / a["hypervolume"]).round(4)
    table["test_hypervolume_vs_all"] = (table["test_hypervolume"] / a["test_hypervolume"]).round(4)
    table["synth_time_vs_all"] = (table["synth_s"] / a["synth_s"]).round(3)

    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "multifidelity.csv", index=False)
    pd.DataFrame(per_design).to_csv(args.out / "multifidelity_designs.csv", index=False)
    header = write_provenance(args.out, "multifidelity", meta)
    text = summary(table, header, n, len(batches), args.budget, args.jobs)
    (args.out / "multifidelity.md").write_text(text)
    print(text)


def summary(table: pd.DataFrame, header: str, designs: int, trainings: int, budget: int, jobs: int) -> str:
    """The results file's text: what was measured, the table, the two ratios the issue asks about."""
    f, a = table.set_index("mode").loc["front"], table.set_index("mode").loc["all"]
    lines = [
        "# Multi-fidelity synthesis: `front` against `all` on the same candidates",
        "",
        header,
        "",
        f"{designs} designs (final models and harvested epochs) of {trainings} digits trainings "
        f"({budget} epochs), the same designs for both modes. `all` runs Yosys on every design "
        f"({jobs} trainings at a time); `front` decides design by design as a study would, and Yosys "
        "answers it from the design cache `all` filled (Yosys is deterministic), so `synth_s`, the synthesis "
        "stages' time, counts for each design `front` synthesised the time `all` measured for it, plus "
        "`front`'s own estimate of each design it skipped. Hypervolume: accuracy above 0.8 × log10 Yosys "
        "LUTs below 40,000, of the measured front chosen on the validation split (test: the same points on "
        "the test split). Per design: `multifidelity_designs.csv`.",
        "",
        markdown(table),
        "",
        f"`front` ran {f['syntheses']:.0f} of {a['syntheses']:.0f} syntheses "
        f"({f['syntheses'] / a['syntheses']:.0%}), {f['done_later']:.0f} of them after the trainings "
        f"({f['skipped']:.0f} designs never measured); "
        f"its measured front's hypervolume is {f['hypervolume'] / a['hypervolume']:.2%} of `all`'s "
        f"(test split: {f['test_hypervolume'] / a['test_hypervolume']:.2%}), for "
        f"{f['synth_s'] / a['synth_s']:.0%} of the synthesis time.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
