"""An executor whose jobs are done the moment they are submitted, with synthetic outcomes shaped like
real ones: for testing and benchmarking the driver's own work (tests/test_driver_scale.py,
benchmarks/driver_scale.py), never for studies."""

from __future__ import annotations

import numpy as np

from hqsearch.executors import Finished
from hqsearch.pipeline.preflight import Ready
from hqsearch.pipeline.trial import TrialOutcome

MODEL_BYTES = 32_000  # about the size of a small HGQ model file


def synthetic(job, rng: np.random.Generator) -> TrialOutcome:
    """A trial's outcome without the trial: accuracy falls and LUTs shrink as beta grows, with noise."""
    beta = job.params.beta
    x = (np.log10(beta) + 7) / 4  # 0 at beta 1e-7, 1 at 1e-3
    luts = float(max(20.0, 3000 * 10 ** (-1.5 * x) * rng.lognormal(0, 0.2)))
    metrics = {
        "accuracy": float(np.clip(0.97 - 0.4 * x**2 + rng.normal(0, 0.01), 0, 1)),
        "ebops": luts * 1.1,
        "luts": luts,
        "ffs": luts / 4,
        "dsps": 0.0,
        "latency_cycles": float(rng.integers(2, 6)),
    }
    metrics["val_accuracy"] = metrics["float_accuracy"] = metrics["accuracy"]
    estimate = {"luts": luts * rng.lognormal(0.1, 0.1), "ffs": luts / 4, "latency_cycles": metrics["latency_cycles"]}
    job.trial_dir.mkdir(parents=True, exist_ok=True)
    model = job.trial_dir / "model.keras"
    model.write_bytes(rng.bytes(MODEL_BYTES))
    (job.trial_dir / "trial.log").write_text("synthetic trial\n")
    return TrialOutcome(
        metrics=metrics,
        sources={k: "synthetic" for k in metrics},
        timings={"train": 0.0, "firmware": 0.0, "synth": 0.0},
        info={"epochs": job.params.epochs or 30, "estimate": estimate, "synth_skipped": None, "final_beta": beta},
        files=[str(model)],
    )


class InstantExecutor:
    """Every job done the moment it is submitted: for benchmarking the driver only."""

    name = "instant"

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.done: list[Finished] = []

    def preflight(self) -> Ready:
        return Ready(1000, 200, 200, (64,), 10, 1000)

    def submit(self, job) -> None:
        self.done.append(Finished(job, synthetic(job, self.rng)))

    def poll(self, timeout: float) -> list[Finished]:  # noqa: ARG002
        done, self.done = self.done, []
        return done

    def cancel_all(self) -> list[Finished]:
        return self.poll(0)

    def close(self) -> None:
        pass
