"""Two real Ray nodes on this machine, started as a user starts a cluster: a head, and a second node that
alone has the synthesis tool's resource. Every synthesis must run there; trainings go to both."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import tiny_raw
from optuna.trial import TrialState
from test_faults import start_driver

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
    """The node and every process it started gone, before the next test may start a Ray of its own."""
    os.killpg(node.pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while in_session(node.pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    if in_session(node.pid):
        os.killpg(node.pid, signal.SIGKILL)
    node.wait()


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
    """(address, head node id, tool node id) of a running two-node cluster. The drivers that join it run in
    processes of their own, as `hqsearch run` does on a cluster."""
    address = f"127.0.0.1:{free_port()}"
    log = tmp_path / "ray_nodes.log"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    head = ray_start(log, "--head", f"--port={address.split(':')[1]}", "--num-cpus=1", "--include-dashboard=false")
    nodes = [head]
    try:
        deadline = time.monotonic() + 120
        while subprocess.run(["ray", "status", f"--address={address}"], capture_output=True, env=env).returncode:
            assert head.poll() is None and time.monotonic() < deadline, f"the Ray head did not start; see {log}"
            time.sleep(1)
        nodes.append(ray_start(log, f"--address={address}", "--num-cpus=2", f'--resources={{"{TOOL}": 1}}'))
        out = subprocess.run([sys.executable, "-c", NODES, address], capture_output=True, text=True, env=env)
        alive = json.loads(out.stdout.strip().splitlines()[-1])
        assert len(alive) == 2, f"the second Ray node did not join; see {log}"
        tool_node = next(n["id"] for n in alive if TOOL in n["resources"])
        head_node = next(n["id"] for n in alive if TOOL not in n["resources"])
        yield address, head_node, tool_node
    finally:
        for node in reversed(nodes):
            stop(node)


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
    driver = start_driver(tmp_path, raw, env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    assert driver.wait(timeout=600) == 0
    study = load_existing(f"sqlite:///{tmp_path / 'out' / 'study.db'}", "two_nodes")
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 4, [t.user_attrs.get("error") for t in study.trials]
    infos = [t.user_attrs["info"] for t in trials]
    assert {info["synth_node"] for info in infos} == {tool_node}
    assert {info["train_node"] for info in infos} == {head_node, tool_node}
