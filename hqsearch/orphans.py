"""Trials left RUNNING by a driver that died, found and handed back to the study.

Optuna's heartbeats do not work with ask/tell, so the driver keeps its own: every trial it asks for
records the driver (`id`, host, pid and the pid's start time) and a `heartbeat` time the driver
refreshes while the trial runs. A RUNNING trial is orphaned when its driver's process is gone (same
host: checked at once) or its heartbeat is older than `stale_after` (any host). Claiming an orphan is
the state change RUNNING → FAIL, which the storage makes atomic: of two drivers that find the same
orphan only one succeeds, and only that one re-enqueues the trial's parameters.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import asdict, dataclass, field

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from .points import CONTINUES_ATTR

DRIVER_ATTR = "driver"
HEARTBEAT_ATTR = "heartbeat"


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
    if owner is None:
        return None  # not asked by hqsearch (e.g. a manual `optuna ask`): leave it alone
    if owner.get("id") == me.id:
        return None
    if driver_gone(owner, me.host):
        return f"driver {owner['id']} (pid {owner['pid']} on {owner['host']}) is gone"
    beat = float(t.user_attrs.get(HEARTBEAT_ATTR, t.datetime_start.timestamp() if t.datetime_start else now))
    if now - beat > stale_after:
        return f"driver {owner['id']} on {owner['host']} sent no heartbeat for {now - beat:.0f} s"
    return None


def recover_orphans(study: optuna.Study, me: DriverId, stale_after: float) -> list[int]:
    """Fail every orphaned trial (atomically) and re-enqueue its parameters; returns the numbers claimed."""
    storage = study._storage
    claimed = []
    now = time.time()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        why = is_orphan(t, me, stale_after, now)
        if why is None:
            continue
        try:
            storage.set_trial_user_attr(t._trial_id, "error", f"lost: {why}; re-enqueued by driver {me.id}")
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:
            continue  # another driver claimed it first
        attrs = {"retry_of": t.number}
        if CONTINUES_ATTR in t.user_attrs:  # a continuation is retried as one, from the same point
            attrs[CONTINUES_ATTR] = t.user_attrs[CONTINUES_ATTR]
        study.enqueue_trial(t.params, user_attrs=attrs, skip_if_exists=False)
        claimed.append(t.number)
    return claimed
