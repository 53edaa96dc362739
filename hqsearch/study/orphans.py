"""Trials left RUNNING by a driver that died, found and handed back to the study.

Optuna's heartbeats do not work with ask/tell, so the driver keeps its own: every trial it asks for
records the driver (`id`, host, pid and the pid's start time) and a `heartbeat` time the driver
refreshes while the trial runs, from the moment it is asked for. A RUNNING trial is orphaned when its
driver's process is gone (same host: checked at once), its heartbeat is older than `stale_after` (any
host), or it names no driver and its last heartbeat (without one: its start) is older than `stale_after`
(a driver that died between `ask` and recording itself, or a manual `optuna ask` left behind): left
alone, such a trial would count against the study's budget forever.

Claiming an orphan is one conditional state change, RUNNING → FAIL only if still RUNNING (`claim`): of
two drivers that find the same orphan only one succeeds, and only that one re-enqueues the trial's
parameters.

A design told with its estimate and measured later (see `fidelity`) is claimed through the storage
too, so that two drivers never synthesise it twice (`measure`). A lost measurement claim is failed and
not re-enqueued: the design it claimed is free to be claimed again.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from hqsearch.study.attrs import (
    CONTINUES_ATTR,
    DRIVER_ATTR,
    ERROR_ATTR,
    HEARTBEAT_ATTR,
    MEASURES_ATTR,
    ORIGIN_ATTR,
    RETRY_OF_ATTR,
)
from hqsearch.study.optuna_private import add_trial_to, fail_if_running, rdb_backend, set_trial_failed, storage_of
from hqsearch.study.points import Origin


def process_start(pid: int) -> str | None:
    """The start time of a process (clock ticks since boot), to tell a live pid from a reused one."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


@dataclass(frozen=True)
class DriverId:
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    pid_start: str | None = field(default_factory=lambda: process_start(os.getpid()))

    def to_dict(self) -> dict:
        return asdict(self)


def driver_gone(owner: dict, here: str) -> bool:
    """True when the owner ran on this host and its process no longer exists."""
    if owner.get("host") != here:
        return False
    start = process_start(int(owner.get("pid", -1)))
    return start is None or (owner.get("pid_start") is not None and start != owner["pid_start"])


def is_orphan(t: FrozenTrial, me: DriverId, stale_after: float, now: float) -> str | None:
    """Why a RUNNING trial is orphaned, or None while its driver is alive."""
    owner = t.user_attrs.get(DRIVER_ATTR)
    if owner is None:  # its driver died before recording itself, or it was asked outside hqsearch
        started = t.datetime_start.timestamp() if t.datetime_start else now
        beat = float(t.user_attrs.get(HEARTBEAT_ATTR, started))  # a driver beats its trials from `ask` on
        if now - beat > stale_after:
            return f"no driver recorded on it, and no heartbeat for {now - beat:.0f} s"
        return None
    if owner.get("id") == me.id:
        return None
    if driver_gone(owner, me.host):
        return f"driver {owner['id']} (pid {owner['pid']} on {owner['host']}) is gone"
    beat = float(t.user_attrs.get(HEARTBEAT_ATTR, t.datetime_start.timestamp() if t.datetime_start else now))
    if now - beat > stale_after:
        return f"driver {owner['id']} on {owner['host']} sent no heartbeat for {now - beat:.0f} s"
    return None


def claim(study: optuna.Study, t: FrozenTrial, error: str) -> bool:
    """Fail a RUNNING trial with `error` unless it has left RUNNING already; True when this call failed it.

    On a database this is one statement, `UPDATE trials SET state = FAIL WHERE trial_id = ? AND state =
    RUNNING`, with the error in the same transaction. Optuna's `set_trial_state_values` reads the state
    (`SELECT … FOR UPDATE`) and writes it in two statements: PostgreSQL locks the row between them, but
    SQLite has no FOR UPDATE and Python's sqlite3 runs the SELECT outside the write transaction, so two
    claimers could both read RUNNING and both "win". The conditional UPDATE is decided under the write lock
    (SQLite's database lock, PostgreSQL's row lock, which makes the second UPDATE re-read the row and match
    nothing), so exactly one claimer changes the row. A journal storage orders every write in its log and
    refuses a state change to a trial an earlier entry finished: Optuna's own call is atomic there.
    """
    backend = rdb_backend(storage_of(study))
    if backend is not None:
        return fail_if_running(backend, t, ERROR_ATTR, error)
    try:
        set_trial_failed(study, t, ERROR_ATTR, error)
    except UpdateFinishedTrialError:
        return False  # another driver claimed it first
    return True


def recover_orphans(study: optuna.Study, me: DriverId, stale_after: float) -> list[int]:
    """Fail every orphaned trial (atomically) and re-enqueue its parameters; returns the numbers claimed.
    A lost measurement claim is only failed: its design is then free for any driver to claim."""
    claimed = []
    now = time.time()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        why = is_orphan(t, me, stale_after, now)
        measures = MEASURES_ATTR in t.user_attrs
        then = (
            f"failed by driver {me.id}; its point can be claimed again"
            if measures
            else f"re-enqueued by driver {me.id}"
        )
        if why is None or not claim(study, t, f"lost: {why}; {then}"):
            continue
        claimed.append(t.number)
        if not measures:
            retry(study, t)
    return claimed


def retry(study: optuna.Study, t: FrozenTrial | optuna.Trial) -> None:
    """Enqueue a training that was lost, failed, with its parameters: the next ask of any driver runs it."""
    attrs = {RETRY_OF_ATTR: t.number}
    if CONTINUES_ATTR in t.user_attrs:  # a continuation is retried as one, from the same point
        attrs[CONTINUES_ATTR] = t.user_attrs[CONTINUES_ATTR]
    study.enqueue_trial(t.params, user_attrs=attrs, skip_if_exists=False)


def measure(study: optuna.Study, point: FrozenTrial, me: DriverId) -> FrozenTrial | None:
    """Claim the later measurement of `point` for this driver: the measuring trial, RUNNING, which the
    driver completes with the measurement (or fails); None when another driver measures it or has.

    The claim is the trial itself, created RUNNING with `measures` = the point's number, this driver and
    a heartbeat; then the claimer reads the study and keeps its claim only when no other trial measuring
    the point is COMPLETE and none still RUNNING has a lower number; else it withdraws (fails its own).
    This is race-free because the storage serialises trial creation in commit order: Optuna numbers a
    new trial under a lock on the study's row (PostgreSQL) or SQLite's single write lock, and in log
    order on a journal. So a claim with a lower number was committed before this one was created, and
    the read after it sees it: of two live claims, the later one always withdraws and the earlier one
    never does. A claim whose driver died is an orphan like any trial (`recover_orphans` fails it
    without re-enqueuing), after which the point is free to be claimed again.
    """
    template = FrozenTrial(
        number=-1,
        state=TrialState.RUNNING,
        value=None,
        datetime_start=datetime.now(),
        datetime_complete=None,
        params=point.params,
        distributions=point.distributions,
        user_attrs={
            ORIGIN_ATTR: Origin.SYNTHESIS.value,
            MEASURES_ATTR: point.number,
            DRIVER_ATTR: me.to_dict(),
            HEARTBEAT_ATTR: time.time(),
        },
        system_attrs={},
        intermediate_values={},
        trial_id=-1,
    )
    mine = add_trial_to(study, template)
    others = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.COMPLETE))
        if t.user_attrs.get(MEASURES_ATTR) == point.number and t.number != mine.number
    ]
    first = next((t for t in others if t.state == TrialState.COMPLETE or t.number < mine.number), None)
    if first is None:
        return mine
    claim(study, mine, f"withdrawn: trial {first.number} measures point {point.number} (driver {me.id})")
    return None
