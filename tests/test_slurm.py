"""The shipped sbatch script, submitted with `sbatch` to a real one-node Slurm on this machine: the Ray
cluster starts inside the allocation and ends with it, the study completes, and a job that is cancelled
or killed while its trials run leaves a study the next job on the same storage takes up."""

from __future__ import annotations

import os
import secrets
import signal
import sqlite3
import time
from collections.abc import Collection
from contextlib import closing
from pathlib import Path

import pytest
import yaml
from conftest import tiny_raw
from helpers import free_port
from optuna.trial import TrialState
from slurm_cluster import cmdline, cpus, describe, installed, processes, slurm, wait_gone
from test_faults import wait_for

from hqsearch.study.attrs import DRIVER_ATTR
from hqsearch.study.storage import load_existing

SCRIPT = Path(__file__).parents[1] / "docker" / "slurm" / "hqsearch.sbatch"

pytestmark = pytest.mark.skipif(
    not installed(),
    reason="needs Slurm's daemons and commands (slurmctld, slurmd, sbatch), which pip does not install "
    "(apt-get install slurm-wlm; .ci/run does)",
)


def study_config(tmp_path: Path, file: str, **sections) -> Path:
    """The study as a user writes it for the script: Ray, joining the cluster the script starts (`auto`
    finds it through RAY_ADDRESS); heartbeats short, so a lost driver's trials are soon found."""
    execution = {"executor": "ray", "heartbeat": 1, "stale_after": 5, "ray": {"address": "auto"}}
    raw = tiny_raw(tmp_path / "out", "slurm", execution=execution, **sections)
    path = tmp_path / file
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def owned_trials(db: Path) -> list[int]:
    """Numbers of the RUNNING trials a driver has recorded itself on, read-only (see `running_trials`)."""
    query = (
        "SELECT number FROM trials JOIN trial_user_attributes USING (trial_id) "
        f"WHERE state = 'RUNNING' AND key = '{DRIVER_ATTR}'"
    )
    if not db.exists():
        return []
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
            return [n for (n,) in con.execute(query)]
    except sqlite3.OperationalError:  # no tables yet, or locked by the writer for a moment
        return []


def raylets(job: int) -> list[int]:
    """The Ray nodes' raylets that job started."""
    return [p for p in processes("SLURM_JOB_ID", str(job)) if "/raylet " in cmdline(p)]


def test_the_sbatch_script_runs_a_study_and_the_next_job_takes_up_a_cancelled_one(tmp_path):
    token = tmp_path / "ray_auth_token"  # the cluster's token: the one a shared home would hold
    token.write_text(secrets.token_hex(32))
    db = tmp_path / "out" / "study.db"
    url = f"sqlite:///{db}"
    slow = study_config(tmp_path, "slow.yaml", training={"epochs": 400})  # trials that run till cancelled
    fast = study_config(tmp_path, "fast.yaml")

    with slurm(tmp_path / "slurm") as cluster:

        def submit(config: Path) -> int:
            env = {"RAY_AUTH_TOKEN_PATH": str(token), "HQSEARCH_RAY_PORT": str(free_port())}
            options = ("--nodes=1", f"--cpus-per-task={cpus()}")
            return cluster.sbatch(SCRIPT, str(config), url, cwd=tmp_path, env=env, options=options)

        def log(job: int) -> str:
            path = tmp_path / f"hqsearch-{job}.log"
            return "; the job printed:\n" + (path.read_text()[-4000:] if path.exists() else "nothing")

        def ended(job: int, expected: str) -> None:
            state = cluster.wait(job, 180)
            assert state["JobState"] == expected, f"job {job} {state['JobState']} {state['ExitCode']}{log(job)}"
            left = wait_gone("SLURM_JOB_ID", str(job), 30)
            assert not left, f"processes of job {job} outlived it: {describe(left)}"

        def running(job: int, before: Collection[int] = ()) -> list[int]:
            """The two trials of the job, once its driver has recorded itself on both (it is then past
            asking them and in its loop), a second later. A cancelled job's trials can still read RUNNING
            (`before`): they are not this job's."""

            def both():
                assert cluster.state(job)["JobState"] in ("PENDING", "RUNNING"), f"job {job} ended{log(job)}"
                numbers = [n for n in owned_trials(db) if n not in before]
                return len(numbers) == 2 and numbers

            numbers = wait_for(both, 180, f"job {job}'s trials to run")
            time.sleep(1)
            return numbers

        # scancel while the trials run: Slurm sends SIGTERM to the batch script, the driver and the Ray steps
        job = submit(slow)
        cancelled = running(job)
        assert raylets(job), "no Ray process runs inside the allocation"
        cluster.run("scancel", str(job))
        ended(job, "CANCELLED")
        # Slurm signals the driver and the Ray steps at once: a driver that gets to it fails its trainings and
        # enqueues them again; one whose Ray went first (its core worker then ends the process) leaves them
        # RUNNING. Either way the next job runs them again
        trials = {t.number: t for t in load_existing(url, "slurm").trials}
        for number in cancelled:
            t = trials[number]
            requeued = t.state == TrialState.FAIL and "stopped by SIGTERM" in t.user_attrs["error"]
            assert requeued or t.state == TrialState.RUNNING, f"trial {number}: {t.state} {t.user_attrs}{log(job)}"

        # a driver killed outright (the OOM killer, a node lost) leaves its trials RUNNING; the script then
        # exits with the driver's status, and Slurm ends the job and its Ray steps
        job = submit(slow)
        orphans = running(job, before=cancelled)
        trials = {t.number: t for t in load_existing(url, "slurm").trials}
        retried = sorted(trials[n].user_attrs.get("retry_of", -1) for n in orphans)
        assert retried == sorted(cancelled), f"job {job} runs {orphans}, not the cancelled ones again"
        driver = [p for p in processes("SLURM_JOB_ID", str(job)) if "hqsearch run" in cmdline(p)]
        assert driver, f"no driver runs in job {job}"
        for pid in driver:
            os.kill(pid, signal.SIGKILL)
        ended(job, "FAILED")
        study = load_existing(url, "slurm")
        assert sorted(t.number for t in study.get_trials(states=(TrialState.RUNNING,))) == sorted(orphans)

        # the next job's driver fails them as orphans, retries their points, and completes the study
        job = submit(fast)
        ended(job, "COMPLETED")
        study = load_existing(url, "slurm")
        trials = {t.number: t for t in study.trials}
        assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 2, log(job)
        assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
        for number in orphans:
            assert "is gone" in trials[number].user_attrs["error"]
            retries = [t for t in trials.values() if t.user_attrs.get("retry_of") == number]
            assert [t.state for t in retries] == [TrialState.COMPLETE], log(job)
