"""The ask/tell loop: keep up to `max_concurrent` trials in flight until the study has `n_trials` COMPLETE
trainings or has spent its `budget` of training epochs. Each training starts fresh or continues a stored
checkpoint (see `continuation`): the driver downloads the checkpoint into the trial's folder. Once no
training is left to start, it measures the designs that trials told with their estimate and that can
still reach the measured front (see `fidelity`), as synthesis-only jobs.

The storage decides how far a study is, so running the same config again continues it. A trial that
fails is told FAIL with its reason and the study goes on; a run gives up after `max_failures` failures.
A first Ctrl-C stops asking and lets running trials finish, a second one cancels them; either way every
trial this driver asked for is told, so the storage is never left with trials stuck in RUNNING. Ctrl-C
never interrupts the driver's own work: the loop reads it between steps, so a trial being recorded (its
tell, its uploads, its harvested candidates) is always recorded whole.

A driver that was killed cannot tell its trials: the next driver on the study finds them (see
`orphans`), fails them and re-enqueues their parameters. Several drivers may run one study at once:
they share the budget through the storage's RUNNING count (which can overshoot `n_trials` by at most
one trial per extra driver, when two ask at the same instant), and claim each later measurement through
the storage (see `orphans.measure`), so no design is synthesised twice.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import numpy as np
import optuna
from optuna.artifacts import download_artifact, upload_artifact
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from hqsearch.config.metrics import unusable
from hqsearch.config.schema import StudyConfig, StudySection
from hqsearch.executors import Executor, Finished, SynthJob, TrialJob, make_executor
from hqsearch.executors.base import error_text
from hqsearch.pipeline.trial import TrialOutcome
from hqsearch.search.continuation import Start, start_of
from hqsearch.search.front import constraint_values
from hqsearch.search.ledger import Ledger
from hqsearch.search.space import hls4ml_settings, opening_ramp, suggest
from hqsearch.study.attrs import (
    ARTIFACTS_ATTR,
    BETA_ATTR,
    CONTINUES_ATTR,
    DRIVER_ATTR,
    EPOCH_ATTR,
    ERROR_ATTR,
    ESTIMATE_KEY,
    EXECUTOR_ATTR,
    HEARTBEAT_ATTR,
    INFO_ATTR,
    MEASURES_ATTR,
    METRICS_ATTR,
    MODEL_ARTIFACT_ATTR,
    ORIGIN_ATTR,
    PARAMS_ATTR,
    PARENT_ATTR,
    SKIPPED_ATTR_KEY,
    SOURCES_ATTR,
    START_FAILED_ATTR,
    TIMINGS_ATTR,
    TOWARD_ATTR,
    TRIAL_DIR_ATTR,
    info_of,
    metrics_of,
    params_of,
    sources_of,
)
from hqsearch.study.optuna_private import set_system_attr, storage_of, trial_of
from hqsearch.study.orphans import DriverId, measure, recover_orphans, retry
from hqsearch.study.points import TRAINING_FILES, Origin, add_point, copy_artifacts, trainings_done
from hqsearch.study.storage import artifact_store, open_study, set_user_attrs

optuna.logging.set_verbosity(optuna.logging.WARNING)
log = logging.getLogger(__name__)

COULD_NOT_START = "could not start:"  # how the error of a trial that failed in `_ask`, before it ran, begins


@dataclass
class Progress:
    target: int | None  # trainings (study.n_trials)
    budget: int | None = None  # training epochs (study.budget)
    epochs: int = 0  # spent by COMPLETE trainings
    complete: int = 0  # trainings
    harvested: int = 0  # candidates added by this run's trainings
    running: int = 0
    failed: int = 0  # in this run
    front: int = 0
    cache_hits: int = 0  # syntheses answered by the design cache in this run
    measured_later: int = 0  # points told with their estimate and measured later, in this run


@dataclass
class RunSummary:
    study_name: str
    storage: str
    complete: int
    failed_this_run: int
    epochs: int = 0  # spent by all COMPLETE trainings of the study
    cache_hits: int = 0
    told: list[int] = field(default_factory=list)
    interrupted: bool = False  # stopped by Ctrl-C (`hqsearch run` then exits 130)
    terminated: bool = False  # stopped by SIGTERM, its running trainings re-enqueued (`hqsearch run` exits 143)
    harvested: int = 0  # in-run candidates added as points of the study in this run
    measured_later: int = 0  # skipped points measured in this run, once the front let them in
    stopped_because: str | None = None
    recovered: list[int] = field(default_factory=list)  # orphaned trials failed and re-enqueued
    dropped: list[int] = field(default_factory=list)  # trials a peer claimed from this driver

    def reached(self, study: StudySection) -> bool:
        """The study has what its config asks for: `n_trials` trainings or its epoch budget."""
        return (study.n_trials is not None and self.complete >= study.n_trials) or (
            study.budget is not None and self.epochs >= study.budget
        )


class _Terminated(Exception):
    """SIGTERM, raised only out of the executor's wait (see `Driver._on_sigterm`)."""


class Told(Enum):
    COMPLETE = "complete"
    FAILED = "failed"
    DROPPED = "dropped"  # claimed by another driver; that driver told it and re-enqueued it


def _claimed_by_peer(err: Exception) -> bool:
    """A write to a trial that is no longer RUNNING: another driver claimed it as an orphan."""
    return isinstance(err, UpdateFinishedTrialError) or (
        isinstance(err, ValueError) and str(err).startswith("Cannot tell a")
    )


class Driver:
    def __init__(
        self,
        cfg: StudyConfig,
        on_progress: Callable[[Progress], None] = lambda p: None,
        executor: Executor | None = None,  # the config's executor unless given (benchmarks give their own)
    ) -> None:
        self.cfg = cfg
        self.on_progress = on_progress
        self.executor = executor if executor is not None else make_executor(cfg)
        try:  # before anything is written: data that cannot load or a model that cannot be built is one error
            self.ready = self.executor.preflight()
            self.study = open_study(cfg)
        except BaseException:
            self.executor.close()
            raise
        self.store = artifact_store(cfg)
        self.ledger = Ledger(cfg)  # what the loop needs of the study, without reading all of it per trial
        self.in_flight: dict[int, optuna.Trial] = {}
        self.later: dict[int, FrozenTrial] = {}  # points told with their estimate, being measured now
        self.claims: dict[int, optuna.Trial] = {}  # their measuring trials (see `orphans.measure`), by point
        self.later_failed: set[int] = set()  # not tried again in this run
        self.progress = Progress(target=cfg.study.n_trials, budget=cfg.study.budget)
        self._interrupts = 0
        self._terminated = False
        self._polling = False  # in the executor's wait, which SIGTERM interrupts
        self.me = DriverId()
        self._last_sweep = time.monotonic()
        self._stop_beating = threading.Event()
        self.dropped: list[int] = []  # trials a peer claimed while this driver ran them
        self.recovered = recover_orphans(self.study, self.me, cfg.execution.stale_after)

    def _ask(self, epochs_left: int | None) -> None:
        ledger = self.ledger
        rng = np.random.default_rng([self.cfg.study.seed or 0, ledger.size()])
        pending = ledger.pending()
        if (plan := ledger.starts.choose(pending, rng)) is not None:  # the sampler fills in the rest
            attrs = {CONTINUES_ATTR: plan.start.point, **({TOWARD_ATTR: plan.below} if plan.below is not None else {})}
            self.study.enqueue_trial(_within(plan.params, epochs_left), user_attrs=attrs)
        elif ledger.starts.opens(pending) and (opening := opening_ramp(self.cfg)):
            self.study.enqueue_trial(_within(opening, epochs_left))
        trial = self.study.ask()
        self.in_flight[trial.number] = trial  # heartbeats from now on: no peer takes a trial still starting
        try:
            trial_dir = self.cfg.study.run_dir / "trials" / f"{trial.number:05d}"
            start_from, start_beta = None, None
            enqueued = trial.user_attrs  # what `enqueue_trial` gave it (one read)
            if (continued := enqueued.get(CONTINUES_ATTR)) is not None:  # also when a peer enqueued it
                # its owner before a download that may take long (a peer then checks this process at once)
                set_user_attrs(trial, {DRIVER_ATTR: self.me.to_dict(), HEARTBEAT_ATTR: time.time()})
                if continued >= len(ledger.trials):  # enqueued by a peer for a point this driver has not seen
                    self._refresh()
                point = ledger.trials[continued] if continued < len(ledger.trials) else None
                start = start_of(point) if point is not None else None
                start_from, start_beta = self._checkpoint(continued, start, trial_dir), start.beta
            params = suggest(trial, self.cfg, start_beta, epochs_left)
            attrs = {
                PARAMS_ATTR: params.to_dict(),
                ORIGIN_ATTR: Origin.TRAINING.value,
                EXECUTOR_ATTR: self.executor.name,
                DRIVER_ATTR: self.me.to_dict(),
                HEARTBEAT_ATTR: time.time(),
                TRIAL_DIR_ATTR: str(trial_dir),
            }
            set_user_attrs(trial, attrs)
            ledger.asked({**enqueued, **attrs})
            seed = None if self.cfg.study.seed is None else self.cfg.study.seed + trial.number
            outlook = ledger.outlook(continued=continued is not None)
            job = TrialJob(trial.number, params, trial_dir, seed, start_from, ledger.gate, outlook)  # pickled now
            self.executor.submit(job)
        except Exception as err:  # a trial asked for is always told, even when it could not start
            self.in_flight.pop(trial.number, None)
            if self._fail(trial, f"could not start: {error_text(err)}") is Told.FAILED:
                self.progress.failed += 1

    def _checkpoint(self, number: int, start: Start | None, trial_dir: Path) -> Path:
        """The continued point's model, from the artifact store into the trial's folder."""
        if start is None:
            raise FileNotFoundError(f"trial {number} has no stored model to continue from")
        trial_dir.mkdir(parents=True, exist_ok=True)
        path = trial_dir / "start.keras"
        try:
            download_artifact(artifact_store=self.store, file_path=str(path), artifact_id=start.model_artifact)
        except Exception as err:
            raise FileNotFoundError(
                f"the checkpoint to continue from is gone: trial {number}'s model (artifact {start.model_artifact} "
                f"in {self.cfg.study.artifact_path}): {error_text(err)}"
            ) from None
        return path

    def _fail(self, trial: optuna.Trial, error: str) -> Told:
        """Tell the trial FAIL with `error`. A continuation that could not start (its checkpoint is gone, its
        architecture left the space) marks its start as failed, so that no driver chooses the point again."""
        attrs: dict = {ERROR_ATTR: error}
        if error.startswith(COULD_NOT_START) and (point := trial.user_attrs.get(CONTINUES_ATTR)) is not None:
            attrs[START_FAILED_ATTR] = point
            self.ledger.starts.start_failed(point)  # at once: the next ask comes before the next refresh
        try:
            set_user_attrs(trial, attrs)
            self.study.tell(trial, state=TrialState.FAIL)
        except Exception as err:
            if not _claimed_by_peer(err):
                raise
            return self._dropped(trial)
        return Told.FAILED

    def _dropped(self, trial: optuna.Trial) -> Told:
        log.warning("trial %d was claimed by another driver (no heartbeat seen in time); dropping it", trial.number)
        self.dropped.append(trial.number)
        return Told.DROPPED

    def _tell(self, done: Finished) -> Told:
        """Record one finished job. Never raises: whatever goes wrong, the trial leaves RUNNING. It stays in
        flight, with its heartbeats, until it is told: a slow upload must not look like a dead driver to a
        peer, which would claim the trial while its results are being written."""
        trial = self.in_flight[done.job.number]
        try:
            told, models = self._record(trial, done)
        except Exception as err:
            if _claimed_by_peer(err):
                told = self._dropped(trial)  # FAIL and re-enqueued by the peer that claimed it
            else:
                log.exception("trial %d: could not record its outcome", trial.number)  # storage or artifact trouble
                told = self._fail(trial, f"hqsearch could not record the outcome: {error_text(err)}")
            self.in_flight.pop(trial.number)
            return told
        self.in_flight.pop(trial.number)
        if told is Told.COMPLETE:  # the parent is told: its candidates become points of their own
            self._harvest(trial, done, models)
        return told

    def _record(self, trial: optuna.Trial, done: Finished) -> tuple[Told, list[str | None]]:
        """Uploads the trial's files and tells it; returns how, and its candidates' model artifacts."""
        out = done.outcome
        attrs = out.user_attrs()
        for f in [*out.files, str(done.job.trial_dir / "trial.log")]:
            if out.error is not None and not Path(f).is_file():  # the trial's own error says more
                log.warning("trial %d failed; its file %s is not on the driver's node", trial.number, f)
                continue
            artifact = self._upload(trial, f)
            if f.endswith(".keras"):  # what a continuation downloads
                attrs[MODEL_ARTIFACT_ATTR] = artifact
        set_user_attrs(trial, attrs)
        models = [self._upload_candidate(trial, c) for c in out.candidates]
        error = out.error if out.error is not None else self._missing(out.metrics)
        if error is not None:
            return self._fail(trial, error), models
        if out.info.get("synth_cache_hit"):
            self.progress.cache_hits += 1
        for key, value in constraint_values(self.cfg.study, out.metrics, out.info).items():
            trial.set_constraint(key, value)
        self.study.tell(trial, self.cfg.study.values(out.metrics))
        return Told.COMPLETE, models

    def _upload(self, trial_or_study: optuna.Trial | optuna.Study, f: str) -> str:
        """A file the trial wrote, as an artifact; one that is not here is an error that says why."""
        if not Path(f).is_file():
            raise FileNotFoundError(f"{f} is not on the driver's node{_NOT_SHARED}")
        return upload_artifact(artifact_store=self.store, file_path=f, study_or_trial=trial_or_study)

    def _upload_candidate(self, parent: optuna.Trial, cand: TrialOutcome) -> str | None:
        """A candidate's files as artifacts of its parent (only a RUNNING trial takes artifacts); returns
        the id of its model."""
        ids = {f: self._upload(parent, f) for f in cand.files}
        return next((a for f, a in ids.items() if str(f).endswith(".keras")), None)

    def _training_copies(self, owner: optuna.Trial | FrozenTrial) -> dict[str, str]:
        """The training curve for a point being added, copied from the training or point it comes from; a
        point whose copy fails is added without one."""
        try:
            return copy_artifacts(self.store, storage_of(self.study), owner, TRAINING_FILES)
        except Exception as err:
            log.warning("trial %d: its training curve could not be copied: %s", owner.number, error_text(err))
            return {}

    def _harvest(self, parent: optuna.Trial, done: Finished, models: list[str | None]) -> None:
        """Each measured candidate of a COMPLETE training becomes a point of the study. The parent is told
        already, so a candidate that cannot be added is logged and skipped, never a failure of the parent."""
        for cand, model in zip(done.outcome.candidates, models, strict=True):
            epoch = cand.info.get("epoch")
            if (why := self._missing(cand.metrics)) is not None:
                log.warning("trial %d, epoch %s: candidate not added: %s", parent.number, epoch, why)
                continue
            attrs = {
                **cand.user_attrs(),
                ORIGIN_ATTR: Origin.HARVEST.value,
                PARENT_ATTR: parent.number,
                EPOCH_ATTR: epoch,
                BETA_ATTR: cand.info.get("beta"),
                MODEL_ARTIFACT_ATTR: model,
                PARAMS_ATTR: done.job.params.to_dict(),
                TRIAL_DIR_ATTR: str(done.job.trial_dir),
            }
            study = self.cfg.study
            try:
                values, constraints = study.values(cand.metrics), constraint_values(study, cand.metrics, cand.info)
                curve = self._training_copies(parent)
                add_point(self.study, values, attrs, constraints, parent.params, parent.distributions, curve)
            except Exception:
                log.exception("trial %d, epoch %s: could not add the candidate", parent.number, epoch)
                continue
            self.progress.harvested += 1

    def _waiting(self) -> list[FrozenTrial]:
        """The points told with their estimate that could still reach the measured front (see `fidelity`),
        most worth measuring first; judged again before every measurement, as the front moves."""
        ledger = self.ledger
        g = ledger.gate
        if g is None:
            return []
        claimed = {t.user_attrs.get(MEASURES_ATTR) for t in ledger.unfinished}  # by any driver, as last read
        busy = ledger.measured | claimed | self.later.keys() | self.later_failed
        skipped = [
            (t, (metrics_of(t.user_attrs), info_of(t.user_attrs).get(ESTIMATE_KEY) or {}))
            for number, t in ledger.skipped.items()
            if number not in busy
        ]
        waiting = [(t, design) for t, design in skipped if g.verdict(*design) is None]
        return [waiting[i][0] for i in g.order([design for _, design in waiting])]

    def _submit_later(self, point: FrozenTrial) -> None:
        """Measure a point told with its estimate, once claimed through the storage: a point another driver
        measures is left to it."""
        number = point.number
        try:
            claimed = measure(self.study, point, self.me)
        except Exception as err:
            log.warning("point %d: its later synthesis could not be claimed: %s", number, error_text(err))
            self.later_failed.add(number)
            return
        if claimed is None:  # the ledger, read again, has the peer's claim: `_waiting` leaves the point to it
            log.info("point %d is measured by another driver", number)
            self._refresh()
            return
        claim = self.claims[number] = trial_of(self.study, claimed)  # heartbeats from now on
        folder = self.cfg.study.run_dir / "trials" / f"{number:05d}" / "measured"
        path = folder / "model.keras"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            download_artifact(
                artifact_store=self.store, file_path=str(path), artifact_id=point.user_attrs[MODEL_ARTIFACT_ATTR]
            )
            ebops = float(metrics_of(point.user_attrs)["ebops"])
            settings = hls4ml_settings(params_of(point.user_attrs))
            self.executor.submit(SynthJob(number, path, ebops, folder, settings))
        except Exception as err:
            log.warning("point %d: its later synthesis could not start: %s", number, error_text(err))
            self.later_failed.add(number)
            self._release(self.claims.pop(number), f"its later synthesis could not start: {error_text(err)}")
            return
        self.later[number] = point
        log.debug("point %d: measured as trial %d", number, claim.number)

    def _tell_later(self, done: Finished) -> None:
        """The measurement of a skipped point: its measuring trial, told as a point of its own that names it
        (see `points`). A failed measurement fails that trial, which frees the point for other drivers."""
        point = self.later.pop(done.job.number)
        claim = self.claims.pop(point.number)
        out, attrs = done.outcome, point.user_attrs
        metrics = {**metrics_of(attrs), **out.metrics}  # its emulation, and now its measurement
        error = out.error if out.error is not None else self._missing(metrics)
        if error is not None:
            log.warning("point %d: its later synthesis failed: %s", point.number, error)
            self.later_failed.add(point.number)
            self._release(claim, f"the later synthesis of point {point.number} failed: {error}")
            return
        info = {**info_of(attrs), **out.info, SKIPPED_ATTR_KEY: None}
        kept = (PARENT_ATTR, EPOCH_ATTR, MODEL_ARTIFACT_ATTR, PARAMS_ATTR, TRIAL_DIR_ATTR)
        study = self.cfg.study
        try:
            reports = [self._upload(self.study, f) for f in out.files]
            new = {
                **{k: attrs[k] for k in kept if k in attrs},
                BETA_ATTR: attrs.get(BETA_ATTR, info.get("final_beta")),
                ARTIFACTS_ATTR: reports,
                METRICS_ATTR: metrics,
                SOURCES_ATTR: {**sources_of(attrs), **out.sources},
                INFO_ATTR: info,
                TIMINGS_ATTR: out.timings,
            }
            values, constraints = study.values(metrics), constraint_values(study, metrics, info)
            for key, record in self._training_copies(point).items():
                set_system_attr(self.study, claim, key, record)
            for key, value in constraints.items():
                claim.set_constraint(key, value)
            set_user_attrs(claim, new)
            self.study.tell(claim, values)
        except Exception as err:
            if _claimed_by_peer(err):
                self._dropped(claim)  # failed by a peer that took this driver for dead: measured again there
                return
            log.exception("point %d: could not add its later measurement", point.number)
            self.later_failed.add(point.number)
            self._release(claim, f"hqsearch could not record the later measurement: {error_text(err)}")
            return
        self.progress.measured_later += 1

    def _release(self, claim: optuna.Trial, error: str) -> None:
        """Fail a measuring trial, which frees its point for any driver. Never raises: a claim this cannot
        fail is left RUNNING, and once this driver is gone a peer fails it as an orphan."""
        try:
            self._fail(claim, error)
        except Exception:
            log.exception("trial %d: could not fail this measurement claim", claim.number)

    def _finish(self, done: Finished) -> Told | None:
        if isinstance(done.job, SynthJob):
            self._tell_later(done)
            return None
        return self._tell(done)

    def _missing(self, metrics: dict[str, float]) -> str | None:
        return unusable(metrics, self.cfg.study.needed_metrics, self.cfg.synthesis.backend)

    def _beat(self) -> None:
        """Heartbeats on this driver's trials, from their own thread: a long poll or tell never delays them."""
        while not self._stop_beating.wait(self.cfg.execution.heartbeat):
            for trial in [*self.in_flight.values(), *self.claims.values()]:
                try:
                    trial.set_user_attr(HEARTBEAT_ATTR, time.time())
                except UpdateFinishedTrialError:
                    pass  # told meanwhile, or claimed by a peer: the main loop sees it at tell
                except Exception:  # a storage hiccup: the next beat tries again
                    log.warning("heartbeat on trial %d failed", trial.number, exc_info=True)

    def _sweep(self) -> None:
        """Now and then, claim trials that other drivers lost."""
        now = time.monotonic()
        stale_after = self.cfg.execution.stale_after
        if now - self._last_sweep >= stale_after / 2:
            self.recovered += recover_orphans(self.study, self.me, stale_after)
            self._last_sweep = now

    def _budget_left(self) -> tuple[int | None, int | None]:
        """(trainings, epochs) still to ask for, None where unlimited. RUNNING counts every driver's
        trainings and the epochs they will train, so drivers that join share the budget."""
        study = self.cfg.study
        running = self.ledger.running()  # every driver's, as of the last refresh, and this driver's asks since
        trainings = None if study.n_trials is None else study.n_trials - self.ledger.trainings - len(running)
        if study.budget is None:
            return trainings, None
        planned = sum(params_of(t.user_attrs).get("epochs") or self.cfg.training.epochs for t in running)
        return trainings, study.budget - self.ledger.epochs - planned

    def _may_ask(self) -> tuple[bool, int | None]:
        trainings, epochs = self._budget_left()
        return (trainings is None or trainings > 0) and (epochs is None or epochs > 0), epochs

    def _refresh(self) -> None:
        """The ledger brought up to date: one read of the trials that changed or still run."""
        self.ledger.refresh(self.study.get_trials(deepcopy=False))

    def _update_progress(self, refresh: bool = False) -> None:
        if refresh:
            self._refresh()
        p, ledger = self.progress, self.ledger
        p.complete, p.epochs = ledger.trainings, ledger.epochs  # as of the last refresh
        p.running = len(self.in_flight) + len(self.later)  # trainings, and syntheses of deferred designs
        p.front = len(ledger.front) if p.complete else 0
        self.on_progress(p)

    def _on_sigint(self, signum, frame) -> None:  # noqa: ARG002
        """Counts Ctrl-C and never raises: a KeyboardInterrupt in the middle of an ask or a tell would leave
        that trial RUNNING. The loop stops asking after the first and cancels what runs after the second,
        within a poll's second or once the trial being recorded is told."""
        self._interrupts += 1

    def _on_sigterm(self, signum, frame) -> None:  # noqa: ARG002
        """A batch system ends the job (`scancel`, its time limit, preemption), and its Ray nodes with it:
        the loop re-enqueues the running trainings for the next driver on the study at once, before the Ray
        this process talks to is gone (and ends it). It raises only out of the executor's wait; anywhere else
        the loop sees the flag when its write is done, as with `_on_sigint`. It replaces Ray's handler, which
        raises `SystemExit` wherever the driver is."""
        self._terminated = True
        if self._polling:  # out of the executor's wait at once, where nothing of the study is being written
            raise _Terminated

    def _poll(self) -> list[Finished]:
        """What finished within a second; nothing once SIGTERM came (see `_on_sigterm`)."""
        self._polling = True
        try:
            return [] if self._terminated else self.executor.poll(timeout=1.0)
        except _Terminated:
            return []
        finally:
            self._polling = False

    def run(self) -> RunSummary:
        cfg = self.cfg
        summary = RunSummary(cfg.study.name, cfg.study.storage_url, 0, 0)
        main_thread = threading.current_thread() is threading.main_thread()
        if main_thread:
            handlers = {signal.SIGINT: self._on_sigint, signal.SIGTERM: self._on_sigterm}
            previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
        beats = threading.Thread(target=self._beat, daemon=True, name="hqsearch-heartbeat")
        beats.start()
        try:
            self._update_progress(refresh=True)
            while True:
                stop = self._stop_reason()
                while stop is None and len(self.in_flight) + len(self.later) < cfg.execution.max_concurrent:
                    may, epochs_left = self._may_ask()
                    if may:
                        self._ask(epochs_left)
                        self._update_progress()
                        stop = self._stop_reason()
                    elif waiting := self._waiting():  # the trainings are done: what can still reach the front
                        self._submit_later(waiting[0])
                    else:
                        break
                if self._terminated:  # what runs is re-enqueued, not waited for
                    summary.stopped_because = self._stop_reason()
                    break
                if self._interrupts >= 2:
                    summary.stopped_because = "cancelled by a second Ctrl-C"
                    break
                if not self.in_flight and not self.later:
                    summary.stopped_because = stop
                    break
                self._sweep()
                if finished := self._poll():
                    for done in finished:
                        told = self._finish(done)
                        if told is Told.FAILED:
                            self.progress.failed += 1
                        if told is not None:
                            summary.told.append(done.job.number)
                    self._update_progress(refresh=True)
        except KeyboardInterrupt:  # not from Ctrl-C, which `_on_sigint` counts; `_end_the_rest` tells the rest
            self._interrupts += 1
            summary.stopped_because = "cancelled by a KeyboardInterrupt"
        finally:
            # whatever ended the loop, every trial this driver asked for leaves RUNNING
            summary.told += self._end_the_rest()
            self._stop_beating.set()
            if main_thread:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
        summary.complete, summary.epochs = trainings_done(self.study)
        summary.harvested = self.progress.harvested
        summary.failed_this_run = self.progress.failed
        summary.cache_hits = self.progress.cache_hits
        summary.measured_later = self.progress.measured_later
        summary.recovered = self.recovered
        summary.dropped = self.dropped
        summary.interrupted = self._interrupts > 0
        summary.terminated = self._terminated
        return summary

    def _end_the_rest(self) -> list[int]:
        told = []
        if self._terminated:  # the study first: the batch system's SIGKILL, or Ray's end, may come any moment
            for trial in list(self.in_flight.values()):
                self.in_flight.pop(trial.number)
                if self._fail(trial, "the driver was stopped by SIGTERM; re-enqueued") is Told.FAILED:
                    retry(self.study, trial)
                told.append(trial.number)
        try:
            for done in self.executor.cancel_all():
                if isinstance(done.job, SynthJob):
                    self._tell_later(done)  # a cancelled later synthesis leaves its point as it was
                elif done.job.number in self.in_flight:  # not re-enqueued above
                    self._tell(done)
                    told.append(done.job.number)
        finally:
            self.executor.close()
            for trial in list(self.in_flight.values()):  # asked but unknown to the executor
                self.in_flight.pop(trial.number)
                self._fail(trial, "the driver stopped before this trial ran")
                told.append(trial.number)
            for number in list(self.claims):  # a measurement the executor did not hand back
                self.later.pop(number, None)
                self._release(self.claims.pop(number), "the driver stopped before this measurement ended")
        return told

    def _stop_reason(self) -> str | None:
        if self._terminated:
            return "stopped by SIGTERM; the running trainings are re-enqueued"
        if self._interrupts:
            return "interrupted by Ctrl-C (running trials were allowed to finish)"
        if self.progress.failed >= self.cfg.execution.max_failures:
            return f"{self.progress.failed} trials failed in this run (execution.max_failures)"
        return None


# why a trial's file can be missing on the driver's node
_NOT_SHARED = (
    " (its worker wrote it on a node that shares no filesystem with the driver: execution.ray.transfer "
    "'object_store' brings a trial's files back through Ray)"
)


def _within(params: dict, epochs_left: int | None) -> dict:
    """An enqueued ramp, shortened to what the epoch budget has left."""
    if epochs_left is not None and params.get("epochs", 0) > epochs_left:
        return {**params, "epochs": epochs_left}
    return params


def run_study(cfg: StudyConfig, on_progress: Callable[[Progress], None] = lambda p: None) -> RunSummary:
    return Driver(cfg, on_progress).run()
