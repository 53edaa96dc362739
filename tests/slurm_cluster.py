"""A real one-node Slurm cluster on loopback, for tests: `slurmctld` and `slurmd` from Debian's `slurm-wlm`
with a config in a temporary folder, free ports, and no authentication daemon (auth/none: the daemons and
the commands run on this machine only). Every process it starts carries a marker in its environment,
and every process a job starts carries SLURM_JOB_ID, so a test can tell by pid what is still alive."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from helpers import free_port

# Debian puts the daemons in /usr/sbin, which a user's PATH may lack
SBIN = ("/usr/sbin", "/sbin")
MARKER = "HQSEARCH_TEST_SLURM"


def daemon(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path=os.pathsep.join(SBIN))


def installed() -> bool:
    return all(daemon(d) for d in ("slurmctld", "slurmd")) and all(shutil.which(c) for c in ("sbatch", "scancel"))


def cpus() -> int:
    return len(os.sched_getaffinity(0))


def memory_mb() -> int:
    """What the node offers: a little less than this machine has (slurmd drains a node that has less)."""
    kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if "MemTotal" in line)
    return kb // 1024 * 9 // 10


def config(root: Path) -> str:
    return f"""\
ClusterName=hqtest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/none
CredType=cred/none
# no cgroups in a container: processes are tracked by parentage, tasks are not bound
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus()} RealMemory={memory_mb()} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


def environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return {}  # a zombie has exited
    except OSError:
        return {}
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


def processes(key: str, value: str) -> list[int]:
    """Live processes whose environment has key=value."""
    return [int(p.name) for p in Path("/proc").glob("[0-9]*") if environ(int(p.name)).get(key) == value]


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "(gone)"


def describe(pids: list[int]) -> str:
    return "; ".join(f"{pid}: {cmdline(pid)[:120]}" for pid in pids)


def wait_gone(key: str, value: str, timeout: float) -> list[int]:
    """Poll until no process has key=value in its environment; the ones still alive after `timeout`."""
    deadline = time.monotonic() + timeout
    while (left := processes(key, value)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


class Cluster:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.conf = root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf), MARKER: str(root)}

    def run(self, *argv: str, **kw) -> subprocess.CompletedProcess:
        kw.setdefault("env", self.env)
        return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60, **kw)

    def sbatch(self, script: Path, *args: str, cwd: Path, env: dict[str, str], options: tuple[str, ...] = ()) -> int:
        out = self.run("sbatch", "--parsable", *options, str(script), *args, cwd=cwd, env={**self.env, **env})
        return int(out.stdout.strip().split(";")[0])

    def state(self, job: int) -> dict[str, str]:
        """JobState, ExitCode, … of a job slurmctld still knows (finished ones for MinJobAge, 300 s)."""
        out = self.run("scontrol", "show", "job", "--oneliner", str(job)).stdout
        return dict(field.split("=", 1) for field in out.split() if "=" in field)

    def wait(self, job: int, timeout: float) -> dict[str, str]:
        """The job's state once it has ended; a job still running after `timeout` is cancelled, and fails."""
        deadline = time.monotonic() + timeout
        while (state := self.state(job))["JobState"] in ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING"):
            if time.monotonic() > deadline:
                self.run("scancel", str(job))
                raise AssertionError(f"job {job} still {state['JobState']} after {timeout:g} s")
            time.sleep(0.5)
        return state


@contextlib.contextmanager
def slurm(root: Path, timeout: float = 60) -> Iterator[Cluster]:
    """slurmctld and slurmd running on loopback, each in its own session; afterwards they and every process
    they started are gone (asserted by pid)."""
    for folder in ("state", "spool"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    cluster = Cluster(root)
    cluster.conf.write_text(config(root))
    daemons = []
    try:
        for argv in (["slurmctld", "-D"], ["slurmd", "-D", "-N", "localhost"]):
            with (root / f"{argv[0]}.out").open("ab") as out:
                daemons.append(
                    subprocess.Popen(
                        [daemon(argv[0]), *argv[1:], "-f", str(cluster.conf)],
                        env=cluster.env,
                        stdout=out,
                        stderr=out,
                        start_new_session=True,
                    )
                )
        deadline = time.monotonic() + timeout
        while "idle" not in cluster.run("sinfo", "--noheader", "--format=%T").stdout:
            dead = [d.args[0] for d in daemons if d.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise AssertionError(f"Slurm did not come up ({dead or 'no idle node'}); see {root}/*.log")
            time.sleep(0.5)
        yield cluster
    finally:
        for d in reversed(daemons):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(d.pid, signal.SIGTERM)
        for d in daemons:
            try:
                d.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(d.pid, signal.SIGKILL)
                d.wait()
        left = wait_gone(MARKER, str(root), 30)  # slurmstepd, job steps, anything they started
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert not left, f"processes of the test's Slurm outlived it: {describe(left)}"
