"""Real Ray clusters of two nodes on this machine, started as a user starts a cluster (`ray start`), and the
one the session's cluster tests share: a head, and a second node that runs in a mount namespace of its own,
declares a logical GPU and alone has the resources that stand for a licensed synthesis tool and for an
isolated worker."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from helpers import free_port, start_driver

TOOL = "vivado_test"  # stands for a synthesis tool licensed on one node only
ISOLATED = "isolated_worker"  # the resource of the node that shares no folder with the driver


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


@dataclass
class SharedCluster:
    """The session's cluster: its address, its nodes' ids and the folder its second node cannot see."""

    address: str
    head: str  # one CPU, no GPU, no tool
    node: str  # two CPUs, one logical GPU, the tool and the isolated worker's resource
    hidden: Path  # on the second node an empty tmpfs: what the driver writes here the node cannot see


@contextlib.contextmanager
def shared_cluster(folder: Path) -> Iterator[SharedCluster]:
    """A head with one CPU and no GPU, and a second node with two CPUs, one logical GPU, `TOOL` and
    `ISOLATED`, in a mount namespace of its own with an empty tmpfs over `folder/hidden`: whatever the node
    writes there the driver cannot see, and the other way round. Its processes all end with it."""
    hidden = folder / "hidden"
    hidden.mkdir(parents=True)
    private = ["unshare", "--mount", "--propagation", "private", "sh", "-c", 'mount -t tmpfs tmpfs "$0" && exec "$@"']
    node = ["--num-cpus=2", "--num-gpus=1", f'--resources={{"{TOOL}": 1, "{ISOLATED}": 2}}']
    with cluster(folder, ["--num-cpus=1", "--num-gpus=0"], node, within=[*private, str(hidden)]) as c:
        # the node's processes see the tmpfs, not the driver's folder
        ours = os.readlink("/proc/self/ns/mnt")
        theirs = [p for p in in_session(c.second.pid) if os.readlink(f"/proc/{p}/ns/mnt") != ours]
        assert theirs and f" {hidden} " in Path(f"/proc/{theirs[0]}/mountinfo").read_text()
        yield SharedCluster(c.address, c.node(TOOL, present=False), c.node(TOOL), hidden)


def run_driver(tmp_path: Path, raw: dict, code: int = 0):
    """`hqsearch run` on `raw` in its own process, joining a cluster as a user's driver does, to its end with
    exit code `code`: its config file, and the config."""
    import yaml

    from hqsearch.config.schema import parse_config

    driver = start_driver(tmp_path, raw, env=ENV)
    assert driver.wait(timeout=600) == code, driver.log.read_text()[-3000:]
    return driver.config, parse_config(yaml.safe_load(driver.config.read_text()))
