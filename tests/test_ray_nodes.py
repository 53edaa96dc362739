"""Two real Ray nodes on this machine, started as a user starts a cluster: a head, and a second node that
alone has the synthesis tool's resource. Every synthesis must run there; trainings go to both."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from hqsearch.driver import run_study
from hqsearch.study import load_existing

TOOL = "vivado_test"  # stands for a synthesis tool licensed on one node only


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_start(log: Path, *flags: str) -> subprocess.Popen:
    """`ray start --block` on loopback in its own session, so the node's processes all end with it. The
    cluster is reachable from this machine only: Ray's token authentication is left off."""
    argv = ["ray", "start", "--block", "--disable-usage-stats", "--node-ip-address=127.0.0.1", *flags]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    with log.open("ab") as out:
        return subprocess.Popen(argv, start_new_session=True, stdout=out, stderr=out, env=env)


def stop(node: subprocess.Popen) -> None:
    os.killpg(node.pid, signal.SIGTERM)
    try:
        node.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(node.pid, signal.SIGKILL)
        node.wait()


@pytest.fixture
def two_nodes(tmp_path):
    """(address, head node id, tool node id) of a running two-node cluster; the driver joins it."""
    import ray

    address = f"127.0.0.1:{free_port()}"
    log = tmp_path / "ray_nodes.log"
    head = ray_start(log, "--head", f"--port={address.split(':')[1]}", "--num-cpus=1", "--include-dashboard=false")
    nodes = [head]
    try:
        deadline = time.monotonic() + 120
        status = ["ray", "status", f"--address={address}"]
        while subprocess.run(status, capture_output=True, env={**os.environ, "RAY_AUTH_MODE": "disabled"}).returncode:
            assert head.poll() is None and time.monotonic() < deadline, f"the Ray head did not start; see {log}"
            time.sleep(1)
        nodes.append(ray_start(log, f"--address={address}", "--num-cpus=2", f'--resources={{"{TOOL}": 1}}'))
        ray.init(address=address, log_to_driver=False)
        while len([n for n in ray.nodes() if n["Alive"]]) < 2:
            assert time.monotonic() < deadline, "the second Ray node did not join"
            time.sleep(1)
        alive = [n for n in ray.nodes() if n["Alive"]]
        tool_node = next(n["NodeID"] for n in alive if TOOL in n["Resources"])
        head_node = next(n["NodeID"] for n in alive if TOOL not in n["Resources"])
        yield address, head_node, tool_node
    finally:
        ray.shutdown()
        for node in reversed(nodes):
            stop(node)


def test_synthesis_runs_only_on_the_node_with_the_tool_and_training_on_both(two_nodes, tiny_config):
    address, head_node, tool_node = two_nodes
    cfg = tiny_config(
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
    assert run_study(cfg).complete == 4
    trials = load_existing(cfg.study.storage_url, "two_nodes").get_trials(states=(TrialState.COMPLETE,))
    infos = [t.user_attrs["info"] for t in trials]
    assert {info["synth_node"] for info in infos} == {tool_node}
    assert {info["train_node"] for info in infos} == {head_node, tool_node}
