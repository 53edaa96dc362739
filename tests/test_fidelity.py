"""Multi-fidelity synthesis: which designs the backend measures, how a skipped one is labelled, and how
one that the front later lets in is measured then."""

import math
import os

import numpy as np
import pytest
from conftest import tiny_raw

from hqsearch.config.schema import parse_config
from hqsearch.pipeline.trial import Trained, TrialOutcome, synth_one
from hqsearch.search.fidelity import DEFERRED, empty_gate, fit_line, gate, syntheses
from hqsearch.study.attrs import ESTIMATE_KEY, FAMILY_KEY, SKIPPED_ATTR_KEY
from hqsearch.study.optuna_private import storage_of

OBJECTIVES = {"accuracy": "max", "luts": "min"}


def config(tmp_path, **synthesis):
    raw = tiny_raw(tmp_path, "fid", study={"n_trials": 1, "objectives": OBJECTIVES})
    raw["synthesis"].update({"backend": "yosys", "cache": False, **synthesis})
    return parse_config(raw)


def estimate(luts: float) -> dict[str, float]:
    return {"luts": luts, "ffs": luts / 10, "dsps": 0.0, "latency_cycles": 2.0, "latency_ns": 10.0}


def line_of(g, n=8, ratio=0.95, wobble=0.03, accuracy=0.5):
    """`n` measured designs from 500 to about 5,000 estimated LUTs, measured at `ratio` × the estimate,
    give or take `wobble`."""
    for i in range(n):
        est = 500 * 1.4**i
        g.add({"accuracy": accuracy, "luts": est * ratio * (1 + wobble * (-1) ** i)}, estimate(est), f"#{i}")
    return g


def test_a_design_far_behind_the_front_is_skipped_one_near_it_is_not(tmp_path):
    g = line_of(empty_gate(config(tmp_path)))
    g.add({"accuracy": 0.9, "luts": 1000.0}, estimate(1050), "#best")
    far = g.verdict({"accuracy": 0.85}, estimate(3000))  # less accurate, and about 3x the LUTs
    assert far == "dominated by the measured front (#best)"
    # as accurate, and predicted at 0.95 x 1100 = 1045 LUTs: within the margin of #best's 1000
    assert g.verdict({"accuracy": 0.9}, estimate(1100)) is None
    assert g.verdict({"accuracy": 0.91}, estimate(3000)) is None  # more accurate than any measured design
    wide = line_of(empty_gate(config(tmp_path, fidelity_margin=40.0)))  # an absurd margin keeps everything
    wide.add({"accuracy": 0.9, "luts": 1000.0}, estimate(1050), "#best")
    assert wide.verdict({"accuracy": 0.85}, estimate(3000)) is None


def test_everything_is_synthesised_until_enough_designs_are_measured(tmp_path):
    g = line_of(empty_gate(config(tmp_path, fidelity_after=8)), n=5)
    g.add({"accuracy": 0.9, "luts": 1000.0}, estimate(1050), "#best")
    assert g.measured == 6 < g.after
    assert g.verdict({"accuracy": 0.5}, estimate(30000)) is None
    assert g.decide({"accuracy": 0.99}, estimate(300)) is None  # measured now: the lines are being learned
    g.add({"accuracy": 0.1, "luts": 20000.0}, estimate(21000), "#7")
    g.add({"accuracy": 0.1, "luts": 30000.0}, estimate(31000), "#8")
    assert g.verdict({"accuracy": 0.5}, estimate(30000)) is not None
    assert g.decide({"accuracy": 0.99}, estimate(300)) == DEFERRED  # it could reach the front: measured at the end


def test_each_hls4ml_setting_learns_its_own_line(tmp_path):
    """A searched strategy changes the measurement, not the estimate: the resource strategy's designs are
    judged by their own measurements, not by the latency strategy's line."""
    g = line_of(empty_gate(config(tmp_path)))  # designs without settings, at 0.95 x the estimate
    latency, resource = "latency, reuse 1, io_parallel", "resource, reuse 4, io_parallel"
    for i in range(8):  # latency designs measured at 0.95 x, resource designs at 0.25 x the estimate
        est = 500 * 1.4**i
        for family, ratio in ((latency, 0.95), (resource, 0.25)):
            measured = {"accuracy": 0.5, "luts": est * ratio * (1 + 0.03 * (-1) ** i)}
            g.add(measured, {**estimate(est), FAMILY_KEY: family}, "#")
    g.add({"accuracy": 0.9, "luts": 1000.0}, estimate(1050), "#best")
    assert g.counts == {"": 9, latency: 8, resource: 8} and g.measured == 25
    design = {"accuracy": 0.85}
    verdict = g.verdict(design, {**estimate(3000), FAMILY_KEY: latency})  # about 2,850 LUTs
    assert verdict == "dominated by the measured front (#best)"
    assert g.verdict(design, {**estimate(3000), FAMILY_KEY: resource}) is None  # about 750: it could beat #best
    new = {**estimate(3000), FAMILY_KEY: "distributed_arithmetic, reuse 1, io_parallel"}
    assert g.decide({"accuracy": 0.85}, new) is None  # no line for it yet: measured now


def test_a_design_that_cannot_meet_a_constraint_is_skipped(tmp_path):
    raw = tiny_raw(tmp_path, "fid", study={"n_trials": 1, "objectives": OBJECTIVES, "constraints": ["luts <= 2000"]})
    raw["synthesis"].update(backend="yosys")
    g = line_of(empty_gate(parse_config(raw)))
    assert g.verdict({"accuracy": 0.99}, estimate(20000)) == "cannot meet luts <= 2000"
    assert g.verdict({"accuracy": 0.99}, estimate(1900)) is None


def test_no_gate_where_every_design_is_measured(tmp_path):
    assert empty_gate(config(tmp_path, fidelity="all")) is None
    assert empty_gate(config(tmp_path, backend="estimate")) is None


def test_a_wide_margin_on_a_spread_out_line_is_an_infinite_interval_not_an_overflow():
    line = fit_line([(100.0, 100.0), (200.0, 900.0), (400.0, 300.0), (800.0, 3000.0)])  # 2 degrees of freedom
    low, high = line.interval(500.0, 8.0)
    assert low == 0.0 and high == math.inf


@pytest.mark.parametrize("needed", [{"objectives": {"accuracy": "max", "brams": "min"}}, {"constraints": ["ii <= 4"]}])
def test_a_metric_only_the_backend_gives_is_measured_never_deferred_or_skipped(tmp_path, needed):
    """BRAMs, II and the HLS clock are not in alkaid's estimate: a design told without them could not be
    told at all (its training would fail), so every design is measured."""
    raw = tiny_raw(tmp_path, "fid", study={"n_trials": 1, "objectives": OBJECTIVES, **needed})
    raw["synthesis"].update({"backend": "vitis", "cache": False})
    g = empty_gate(parse_config(raw))
    metric = "brams" if "objectives" in needed else "ii"
    for i in range(8):  # more than enough measured designs for the lines
        est = 500 * 1.4**i
        g.add({"accuracy": 0.9, "luts": est, metric: 2.0}, estimate(est), f"#{i}")
    assert g.unpredicted(estimate(100)) == [metric]
    assert g.decide({"accuracy": 0.99}, estimate(300)) is None  # would be deferred without the metric
    assert g.decide({"accuracy": 0.1}, estimate(1e6)) is None  # would be ruled out


def test_the_line_and_its_interval():
    def pairs(n):  # measured at 0.9 x the estimate, give or take 2 %
        return [(e, 0.9 * e * (1.02 if i % 2 else 0.98)) for i, e in enumerate(100 * 1.6 ** np.arange(n))]

    line = fit_line(pairs(12))
    assert line.b == pytest.approx(1.0, abs=0.02)
    assert math.expm1(line.a + line.b * math.log1p(1000)) == pytest.approx(900, rel=0.03)
    low, high = line.interval(1000, 3.0)
    assert low < 900 < high and high / low < 1.3
    few_low, few_high = fit_line(pairs(4)).interval(1000, 3.0)  # Student's t on 2 degrees of freedom: wide
    assert few_high / few_low > 1.5 * high / low
    far_low, far_high = line.interval(1e6, 3.0)  # extrapolated: wider
    assert far_high / far_low > high / low
    dsps = fit_line([(0.0, 0.0)] * 8)  # an estimate that never varies: a constant, here exactly 0
    assert dsps.interval(0.0, 3.0) == (0.0, 0.0)


def _trained(tiny_model, tmp_path):
    from hqsearch.backends import build_design
    from hqsearch.config.schema import SynthesisSection

    model, path, ebops = tiny_model
    design = build_design(model, ebops, SynthesisSection(backend="yosys"), tmp_path)
    return Trained(TrialOutcome(metrics={"accuracy": 0.5}), path, ebops, design, design.comb)


def test_the_synthesis_stage_skips_a_dominated_design_defers_a_promising_one(tiny_model, tmp_path):
    cfg = config(tmp_path)

    def stage(folder, g):
        where = tmp_path / folder
        return synth_one(cfg, None, _trained(tiny_model, where), where, lambda s: None, "m.json", gate=g)

    g = line_of(empty_gate(cfg), accuracy=0.1)
    g.add({"accuracy": 0.9, "luts": 1.0}, estimate(1.0), "trial #3")  # better on both, by far
    out = stage("far", g)
    why = "dominated by the measured front (trial #3)"
    assert out.info[SKIPPED_ATTR_KEY] == why
    assert out.sources["luts"] == f"alkaid estimate (not synthesised: {why})"
    assert out.metrics["luts"] == out.metrics["estimated_luts"] == out.info[ESTIMATE_KEY]["luts"] > 0
    assert not (tmp_path / "far" / "rtl.tar.gz").exists()  # Yosys never saw it

    out = stage("near", line_of(empty_gate(cfg), accuracy=0.1))  # more accurate than anything measured
    assert (
        out.info[SKIPPED_ATTR_KEY] == DEFERRED
        and out.sources["luts"] == f"alkaid estimate (not synthesised: {DEFERRED})"
    )

    out = stage("early", line_of(empty_gate(cfg), n=2, accuracy=0.1))  # the lines are still being learned
    assert out.info[SKIPPED_ATTR_KEY] is None and out.sources["luts"].startswith("yosys")
    assert out.info[ESTIMATE_KEY]["luts"] == out.metrics["estimated_luts"]


def test_a_skipped_point_the_front_later_lets_in_is_synthesised_then(tiny_model, tmp_path, capsys, ray_instance):
    """Through the real driver, storage, artifact store and a Ray task on the synthesis resources of the
    session's Ray instance: the skipped point is dominated while the measurements fit one line; designs
    measured later spread the line, it could now enter the front, and the driver measures it (once) as a
    point of its own. (The local executor's later measurements: `test_front`, `test_driver`.)"""
    from optuna.artifacts import get_all_artifact_meta, upload_artifact
    from optuna.trial import TrialState

    from hqsearch.analysis.report import write_report
    from hqsearch.backends import estimate_backend
    from hqsearch.cli import main
    from hqsearch.driver import run_study
    from hqsearch.study.attrs import MEASURES_ATTR, MODEL_ARTIFACT_ATTR, ORIGIN_ATTR
    from hqsearch.study.points import TRAINING_FILES, Origin, add_point, copy_artifacts
    from hqsearch.study.storage import artifact_store, open_study

    cfg = config(tmp_path)
    ray = {"num_cpus": 2, "synth": {"num_cpus": 1}, "transfer": "object_store"}
    cfg = cfg.model_copy(update={"execution": cfg.execution.model_validate({"executor": "ray", "ray": ray})})
    model, path, ebops = tiny_model
    est = (
        estimate_backend(cfg.synthesis)
        .synthesize(_trained(tiny_model, tmp_path / "e").design, cfg.synthesis, tmp_path)
        .metrics
    )
    own = {k: est[k] for k in estimate(0)}
    study = open_study(cfg)

    def point(accuracy, luts, est_luts, origin=Origin.IMPORT, **attrs):
        metrics = {"accuracy": accuracy, "luts": luts, "ebops": ebops}
        info = {ESTIMATE_KEY: estimate(est_luts), "synth_tool": "yosys 0.23 (native)", "epochs": 1, **attrs}
        add_point(study, [accuracy, luts], {ORIGIN_ATTR: origin.value, "metrics": metrics, "info": info}, {})

    point(0.2, 100.0, 100.0, Origin.TRAINING)  # the one training n_trials asks for: no training runs
    for i in range(7):  # measured at the estimate, give or take 1 %
        e = own["luts"] * 0.25 * 1.5**i
        point(0.2, e * (1.01 if i % 2 else 0.99), e)
    point(0.7, 0.8 * own["luts"], 0.8 * own["luts"])  # better than the skipped design on both
    skipped_metrics = {"accuracy": 0.6, "luts": own["luts"], "ebops": ebops}
    store = artifact_store(cfg)
    artifact = upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=study)
    (tmp_path / "training.png").write_bytes(b"the curve of the training that saved the skipped design")
    upload_artifact(artifact_store=store, file_path=str(tmp_path / "training.png"), study_or_trial=study)
    why = "dominated by the measured front (trial #8)"
    add_point(
        study,
        [0.6, own["luts"]],
        {
            ORIGIN_ATTR: Origin.HARVEST.value,
            MODEL_ARTIFACT_ATTR: artifact,
            "metrics": skipped_metrics,
            "sources": {"luts": f"alkaid estimate (not synthesised: {why})"},
            "info": {ESTIMATE_KEY: own, SKIPPED_ATTR_KEY: why},
        },
        {},
        artifacts=copy_artifacts(store, storage_of(study), study, TRAINING_FILES),
    )
    skipped = study.get_trials(deepcopy=False)[-1]
    assert gate(cfg, study.get_trials(deepcopy=False)).verdict(skipped_metrics, own) == why

    def told_with_estimate(accuracy, luts, reason):
        metrics = {"accuracy": accuracy, "luts": luts, "ebops": ebops}
        info = {ESTIMATE_KEY: {**own, "luts": luts}, SKIPPED_ATTR_KEY: reason}
        attrs = {ORIGIN_ATTR: Origin.HARVEST.value, MODEL_ARTIFACT_ATTR: artifact, "metrics": metrics, "info": info}
        add_point(study, [accuracy, luts], attrs, {})
        return study.get_trials(deepcopy=False)[-1]

    far = told_with_estimate(0.19, 2 * own["luts"], "dominated by the measured front (trial #1)")
    near = told_with_estimate(0.75, own["luts"], DEFERRED)  # the most accurate design: on the front

    for i in range(4):  # where Yosys needs half the estimate: the line spreads
        e = own["luts"] * 0.5 * 1.5**i
        point(0.1, 0.5 * e, e)
    assert gate(cfg, study.get_trials(deepcopy=False)).verdict(skipped_metrics, own) is None

    summary = run_study(cfg)
    assert summary.measured_later == 2 and summary.complete == 1  # no training: the study had its one
    measured = {
        t.user_attrs[MEASURES_ATTR]: t for t in study.get_trials(deepcopy=False) if MEASURES_ATTR in t.user_attrs
    }
    assert set(measured) == {skipped.number, near.number}  # the far one stays told with its estimate
    later = measured[skipped.number]
    assert later.state == TrialState.COMPLETE and later.user_attrs[ORIGIN_ATTR] == Origin.SYNTHESIS.value
    assert later.user_attrs[MEASURES_ATTR] == skipped.number
    assert later.user_attrs["sources"]["luts"].startswith("yosys") and later.values[0] == 0.6
    assert later.values[1] == later.user_attrs["metrics"]["luts"] != own["luts"]
    assert later.user_attrs["info"][SKIPPED_ATTR_KEY] is None
    assert later.user_attrs["info"]["synth_pid"] != os.getpid()  # in a worker
    assert "synth_host" in later.user_attrs["info"]  # the Ray synthesis task's record
    assert study.get_trials(deepcopy=False)[skipped.number].values == [0.6, own["luts"]]  # told values stay
    (curve,) = [a for a in get_all_artifact_meta(later, storage=storage_of(study)) if a.filename == "training.png"]
    (told,) = [a for a in get_all_artifact_meta(skipped, storage=storage_of(study)) if a.filename == "training.png"]
    with store.open_reader(curve.artifact_id) as f, store.open_reader(told.artifact_id) as g:
        assert curve.artifact_id != told.artifact_id and f.read() == g.read()  # a copy of the measured point's

    assert run_study(cfg).measured_later == 0  # measured once: the next run leaves it
    capsys.readouterr()
    where = ["export", "--storage", cfg.study.storage_url, "--study", cfg.study.name]
    assert main([*where, "--trial", str(later.number), "--out", str(tmp_path / "later")]) == 0
    assert "firmware rtl/: the study's own build (rtl.tar.gz)" in capsys.readouterr().out  # its stored build
    assert (tmp_path / "later" / "rtl" / "synth.ys").is_file()
    assert main([*where, "--trial", str(skipped.number), "--out", str(tmp_path / "told")]) == 0
    assert f"trial {later.number} is its later measurement" in capsys.readouterr().out
    counts = syntheses(study.get_trials(deepcopy=False))
    assert (counts.skipped, counts.later) == (3, 2)
    report = write_report(study, tmp_path / "report", cfg=cfg)
    rows = report.trials.set_index("trial")
    assert not rows.loc[far.number, "synthesised"] and rows.loc[far.number, "skipped_because"].startswith("dominated")
    assert rows.loc[later.number, "synthesised"] and rows.loc[later.number, "measures"] == skipped.number
    assert report.syntheses == counts
    assert main(["status", "--storage", cfg.study.storage_url, "--study", cfg.study.name]) == 0
    assert "3 skipped (told with the alkaid estimate), 2 of those run later" in capsys.readouterr().out
