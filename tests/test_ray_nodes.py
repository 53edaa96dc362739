"""The session's two real Ray nodes (`ray_cluster`), started as a user starts a cluster: a head, and a second
node that alone has the synthesis tool's resource and shares no filesystem with the driver. Every synthesis
must run there; trainings go to both; a study whose files must cross between the nodes runs whole."""

from __future__ import annotations

from conftest import tiny_raw
from optuna.trial import TrialState
from ray_cluster import ISOLATED, TOOL, run_driver

from hqsearch.study.optuna_private import storage_of
from hqsearch.study.storage import load_existing


def test_synthesis_runs_only_on_the_node_with_the_tool_and_training_on_both(ray_cluster, tmp_path):
    address, head_node, tool_node = ray_cluster.address, ray_cluster.head, ray_cluster.node
    raw = tiny_raw(
        tmp_path / "out",
        "two_nodes",
        study={"n_trials": 4},
        execution={
            "executor": "ray",
            "max_concurrent": 2,
            "ray": {
                "address": address,
                "train": {"num_cpus": 1},
                "synth": {"num_cpus": 1, "resources": {TOOL: 1}},
                "transfer": "object_store",
            },
        },
    )
    _, cfg = run_driver(tmp_path, raw)
    study = load_existing(cfg.study.storage_url, cfg.study.name)
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 4, [t.user_attrs.get("error") for t in study.trials]
    infos = [t.user_attrs["info"] for t in trials]
    assert {info["synth_node"] for info in infos} == {tool_node}
    assert {info["train_node"] for info in infos} == {head_node, tool_node}


def test_a_study_on_a_node_that_shares_no_filesystem_with_the_driver(isolated_study, ray_cluster, tmp_path, hq_here):
    """Trainings, harvest, a continuation and Yosys all on the isolated node (`isolated_study`): every file
    reaches the study's artifact store through Ray, a continuation's checkpoint reaches the node, and a
    point exports."""
    from optuna.artifacts import download_artifact, get_all_artifact_meta

    from hqsearch.study.attrs import CONTINUES_ATTR, MODEL_ARTIFACT_ATTR
    from hqsearch.study.points import Origin, origin
    from hqsearch.study.storage import artifact_store

    config, cfg = isolated_study
    node_id = ray_cluster.node
    study = load_existing(cfg.study.storage_url, cfg.study.name)
    errors = [t.user_attrs.get("error") for t in study.trials if t.state != TrialState.COMPLETE]
    assert not errors, errors
    trainings = [t for t in study.trials if origin(t) is Origin.TRAINING]
    assert {t.user_attrs["info"]["train_node"] for t in trainings} == {node_id}
    assert {t.user_attrs["info"]["synth_node"] for t in trainings} == {node_id}
    assert any(CONTINUES_ATTR in t.user_attrs for t in trainings), "no continuation ran"
    assert any(origin(t) is Origin.HARVEST for t in study.trials), "no harvested point"

    store = artifact_store(cfg)
    for t in trainings:
        names = {m.filename for m in get_all_artifact_meta(t, storage=storage_of(study))}
        assert {"model.keras", "metrics.json", "trial.log", "training.csv", "training.png"} <= names, names
        if t.user_attrs["sources"].get("luts", "").startswith("yosys"):
            assert {"stat.json", "rtl.tar.gz"} <= names, names
    for t in study.trials:  # every point's model, harvested ones included
        path = tmp_path / "models" / f"{t.number}.keras"
        path.parent.mkdir(exist_ok=True)
        download_artifact(artifact_store=store, file_path=str(path), artifact_id=t.user_attrs[MODEL_ARTIFACT_ATTR])
        assert path.stat().st_size > 0

    harvested = next(t for t in study.trials if origin(t) is Origin.HARVEST)
    out = tmp_path / "export"
    done = hq_here("export", str(config), "--trial", str(harvested.number), "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (out / "metrics.json").is_file() and any(out.rglob("*.keras"))


def test_files_left_on_a_node_without_a_shared_filesystem_fail_the_trial_with_the_reason(ray_cluster, tmp_path):
    """`transfer: shared_fs` on a node that shares nothing: the driver does not find the trial's files, and
    says so in the trial's error instead of telling it without them."""
    address = ray_cluster.address
    on_node = {"num_cpus": 1, "resources": {ISOLATED: 1}}
    ray = {"address": address, "train": on_node, "synth": on_node, "transfer": "shared_fs"}
    execution = {"executor": "ray", "ray": ray, "max_failures": 1}
    raw = tiny_raw(ray_cluster.hidden / "shared_fs", "shared_fs", study={"n_trials": 1}, execution=execution)
    _, cfg = run_driver(tmp_path, raw, code=1)  # the study stopped: its trial failed
    (trial,) = load_existing(cfg.study.storage_url, cfg.study.name).trials
    assert trial.state == TrialState.FAIL
    error = trial.user_attrs["error"]
    assert "model.keras is not on the driver's node" in error and "execution.ray.transfer" in error, error
