"""Two real Ray nodes on this machine, started as a user starts a cluster: a head, and a second node that
alone has the synthesis tool's resource. Every synthesis must run there; trainings go to both."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import tiny_raw
from optuna.trial import TrialState
from test_faults import start_driver

from hqsearch.config.schema import StudyConfig, parse_config
from hqsearch.study.optuna_private import storage_of
from hqsearch.study.storage import load_existing

TOOL = "vivado_test"  # stands for a synthesis tool licensed on one node only


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ENV = {**os.environ, "RAY_AUTH_MODE": "disabled"}  # the cluster is reachable from this machine only


def ray_start(log: Path, *flags: str, within: Sequence[str] = ()) -> subprocess.Popen:
    """`ray start --block` on loopback in its own session, so the node's processes all end with it; run by
    the command `within` where one is given (which then execs its arguments)."""
    argv = [*within, "ray", "start", "--block", "--disable-usage-stats", "--node-ip-address=127.0.0.1", *flags]
    with log.open("ab") as out:
        return subprocess.Popen(argv, start_new_session=True, stdout=out, stderr=out, env=ENV)


@contextlib.contextmanager
def cluster(folder: Path, head: Sequence[str], node: Sequence[str], within: Sequence[str] = ()) -> Iterator[Cluster]:
    """A running two-node cluster: a head started with the flags `head`, a second node with `node` (and
    `within`, see `ray_start`). The drivers that join it run in processes of their own, as `hqsearch run`
    does on a cluster. Every process of both nodes is gone after it."""
    address = f"127.0.0.1:{free_port()}"
    log = folder / "ray_nodes.log"
    nodes = [ray_start(log, "--head", f"--port={address.split(':')[1]}", "--include-dashboard=false", *head)]
    try:
        deadline = time.monotonic() + 120
        while subprocess.run(["ray", "status", f"--address={address}"], capture_output=True, env=ENV).returncode:
            assert nodes[0].poll() is None and time.monotonic() < deadline, f"the Ray head did not start; see {log}"
            time.sleep(1)
        nodes.append(ray_start(log, f"--address={address}", *node, within=within))
        out = subprocess.run([sys.executable, "-c", NODES, address], capture_output=True, text=True, env=ENV)
        alive = json.loads(out.stdout.strip().splitlines()[-1])
        assert len(alive) == 2, f"the second Ray node did not join; see {log}"
        yield Cluster(address, alive, nodes[1])
    finally:
        for n in reversed(nodes):
            stop(n)


@dataclass
class Cluster:
    address: str
    alive: list[dict]  # each node's id and resources
    second: subprocess.Popen  # the second node's `ray start`

    def node(self, has: str, present: bool = True) -> str:
        """The id of the node whose resources have (or lack) `has`."""
        return next(n["id"] for n in self.alive if bool(n["resources"].get(has)) is present)


def in_session(sid: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def stop(node: subprocess.Popen) -> None:
    """The node and every process it started gone, before the next test may start a Ray of its own. A node
    whose head is gone keeps waiting for it for 30 s: after 5 s it is killed."""
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.pid, sig)
        deadline = time.monotonic() + wait
        while in_session(node.pid) and time.monotonic() < deadline:
            time.sleep(0.5)
    node.wait()
    assert not in_session(node.pid), f"processes of the Ray node {node.pid} outlived it: {in_session(node.pid)}"


NODES = """
import json, sys, time
import ray
ray.init(address=sys.argv[1], log_to_driver=False)
deadline = time.monotonic() + 120
while len([n for n in ray.nodes() if n["Alive"]]) < 2 and time.monotonic() < deadline:
    time.sleep(1)
print(json.dumps([{"id": n["NodeID"], "resources": n["Resources"]} for n in ray.nodes() if n["Alive"]]))
"""


@pytest.fixture
def two_nodes(tmp_path):
    """(address, head node id, tool node id) of a cluster whose second node alone has the tool."""
    with cluster(tmp_path, ["--num-cpus=1"], ["--num-cpus=2", f'--resources={{"{TOOL}": 1}}']) as c:
        yield c.address, c.node(TOOL, present=False), c.node(TOOL)


def test_synthesis_runs_only_on_the_node_with_the_tool_and_training_on_both(two_nodes, tmp_path):
    address, head_node, tool_node = two_nodes
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


ISOLATED = "isolated_worker"  # the resource of the node that shares no folder with the driver


@pytest.fixture(scope="module")
def isolated_node(tmp_path_factory):
    """(address, id of the worker node, folder the driver keeps the study in) of a cluster whose head runs no
    tasks and whose one worker node runs in a mount namespace of its own, with an empty tmpfs over that
    folder: whatever the worker writes there the driver cannot see, and the other way round."""
    tmp_path = tmp_path_factory.mktemp("isolated")
    study_dir = tmp_path / "study"
    study_dir.mkdir()
    private = ["unshare", "--mount", "--propagation", "private", "sh", "-c", 'mount -t tmpfs tmpfs "$0" && exec "$@"']
    worker = ["--num-cpus=2", f'--resources={{"{ISOLATED}": 2}}']
    with cluster(tmp_path, ["--num-cpus=0"], worker, within=[*private, str(study_dir)]) as c:
        # the node's processes see the tmpfs, not the driver's folder
        ours = os.readlink("/proc/self/ns/mnt")
        theirs = [p for p in in_session(c.second.pid) if os.readlink(f"/proc/{p}/ns/mnt") != ours]
        assert theirs and f" {study_dir} " in Path(f"/proc/{theirs[0]}/mountinfo").read_text()
        yield c.address, c.node(ISOLATED), study_dir


def run_driver(tmp_path: Path, raw: dict, code: int = 0) -> tuple[Path, StudyConfig]:
    """`hqsearch run` on `raw` in its own process, to its end with exit code `code`: its config file, and
    the config."""
    with (tmp_path / "driver.log").open("w") as log:
        driver = start_driver(tmp_path, raw, env=ENV, stdout=log, stderr=subprocess.STDOUT)
        assert driver.wait(timeout=600) == code, (tmp_path / "driver.log").read_text()[-3000:]
    config = tmp_path / f"{raw['study']['name']}.yaml"
    return config, parse_config(yaml.safe_load(config.read_text()))


def test_a_study_on_a_node_that_shares_no_filesystem_with_the_driver(isolated_node, tmp_path):
    """Trainings, harvest, a continuation and Yosys all on the isolated node: every file reaches the study's
    artifact store through Ray, a continuation's checkpoint reaches the node, and a point exports."""
    from optuna.artifacts import download_artifact, get_all_artifact_meta

    from hqsearch.study.attrs import CONTINUES_ATTR, MODEL_ARTIFACT_ATTR
    from hqsearch.study.points import Origin, origin
    from hqsearch.study.storage import artifact_store

    address, node_id, study_dir = isolated_node
    on_node = {"num_cpus": 1, "resources": {ISOLATED: 1}}
    raw = tiny_raw(
        study_dir / "out",
        "no_shared_fs",
        study={"n_trials": None, "budget": 20, "objectives": {"accuracy": "max", "luts": "min"}},
        model={"widths": [16]},
        training={
            "epochs": 5,
            "batch_size": 64,
            "harvest": {"max_candidates": 2},
            "continuation": {"share": 1.0, "startup": 1},
        },
        search_space={"beta": {"low": 3e-4, "high": 1e-3, "log": True}, "init_weight_bits": 3, "init_act_bits": 3},
        synthesis={"backend": "yosys"},
        execution={
            "executor": "ray",
            "max_concurrent": 2,
            "ray": {"address": address, "train": on_node, "synth": on_node, "transfer": "object_store"},
        },
    )
    config, cfg = run_driver(tmp_path, raw)
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
    export = [sys.executable, "-m", "hqsearch.cli", "export", str(config), "--trial", str(harvested.number)]
    done = subprocess.run([*export, "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (out / "metrics.json").is_file() and any(out.rglob("*.keras"))


def test_files_left_on_a_node_without_a_shared_filesystem_fail_the_trial_with_the_reason(isolated_node, tmp_path):
    """`transfer: shared_fs` on a node that shares nothing: the driver does not find the trial's files, and
    says so in the trial's error instead of telling it without them."""
    address, _, study_dir = isolated_node
    on_node = {"num_cpus": 1, "resources": {ISOLATED: 1}}
    ray = {"address": address, "train": on_node, "synth": on_node, "transfer": "shared_fs"}
    execution = {"executor": "ray", "ray": ray, "max_failures": 1}
    raw = tiny_raw(study_dir / "shared", "shared_fs", study={"n_trials": 1}, execution=execution)
    _, cfg = run_driver(tmp_path, raw, code=1)  # the study stopped: its trial failed
    (trial,) = load_existing(cfg.study.storage_url, cfg.study.name).trials
    assert trial.state == TrialState.FAIL
    error = trial.user_attrs["error"]
    assert "model.keras is not on the driver's node" in error and "execution.ray.transfer" in error, error
