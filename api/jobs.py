"""Audit jobs: a queue in the database, claimed by worker processes with row locking.

A worker loads the models once, then loops: claim the oldest queued job (or a running one
whose worker stopped sending heartbeats), run the same audit the CLI runs (the same
``run_audit`` with the same :class:`~auditor.auditing.AuditOptions`, in the worker process or
on the Dask scheduler of ``AUDITOR_DASK_SCHEDULER``), store the report in the database, and
record each vendor's estimate for the vendor history. A job submitted with ``task`` uses
the tenant's references of that task, scored (once) by the first job that uses them.
Scored chunks are kept in the job's work directory, so a job taken over after its worker
died resumes instead of starting again (when the new worker shares the directory).

Under faults: a job is finished (or failed) only by the worker that holds its claim (its
``worker`` and ``attempts`` unchanged), in one transaction with its vendor estimates, so a
job taken over from a worker that was only slow is recorded once. An outage of the database
or Redis does not fail a job: heartbeats and the final write are retried, and a job the outage
interrupted is taken over (resuming its chunks) once its heartbeat is stale, up to
``job_max_attempts`` times; the worker itself waits the outage out. A full disk fails the job
with that reason and frees its work directory.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from sqlalchemy import and_, func, or_, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from api.db import AuditFile, AuditJob, VendorEstimate, session_factory, utcnow
from api.outages import OUTAGE_ERRORS, unavailable
from api.settings import ServiceSettings as Settings
from api.task_store import TenantTasks
from auditor.auditing import AuditColumns, AuditOptions, plan, run_audit
from auditor.execution import executor
from auditor.reader import ReadError
from auditor.report.render import render_html, render_markdown
from auditor.scoring import Scorer

log = logging.getLogger(__name__)

QUEUED, RUNNING, SUCCEEDED, FAILED = "queued", "running", "succeeded", "failed"
REFERENCE_ROLES = ("human_reference", "machine_reference")
# How long a worker retries writing a finished job's result while the database is unavailable;
# after that the job is left to be taken over (its scored chunks are kept).
FINISH_RETRY_SECONDS = 30.0
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def job_options(params: dict) -> AuditOptions:
    """The audit options stored with a job (jobs queued before options were stored whole held
    only their columns and interval level)."""
    if "options" in params:
        return AuditOptions.model_validate(params["options"])
    return AuditOptions(columns=AuditColumns(**params["columns"]), level=params.get("level", 0.9))


def jobs_dir(settings: Settings) -> Path:
    return settings.cache_dir / "jobs"


def _claimable(settings: Settings):
    stale = utcnow() - timedelta(seconds=settings.job_stale_seconds)
    return or_(AuditJob.status == QUEUED, and_(AuditJob.status == RUNNING, AuditJob.heartbeat_at < stale))


def claim_job(session: Session, settings: Settings, worker: str) -> AuditJob | None:
    """Atomically take the oldest claimable job for ``worker``."""
    now = utcnow()
    if session.get_bind().dialect.name == "postgresql":
        job = session.scalars(
            select(AuditJob)
            .where(_claimable(settings))
            .order_by(AuditJob.created_at)
            .limit(1)
            .with_for_update(skip_locked=True)
        ).first()
        if job is None:
            session.rollback()
            return None
        job.status, job.worker, job.heartbeat_at, job.attempts = RUNNING, worker, now, job.attempts + 1
        job.started_at = job.started_at or now
        session.commit()
        return job
    # SQLite has no row locks: one UPDATE ... RETURNING is atomic under its database lock.
    candidate = select(AuditJob.id).where(_claimable(settings)).order_by(AuditJob.created_at).limit(1).scalar_subquery()
    claimed = session.execute(
        update(AuditJob)
        .where(AuditJob.id == candidate, _claimable(settings))
        .values(status=RUNNING, worker=worker, heartbeat_at=now, attempts=AuditJob.attempts + 1)
        .returning(AuditJob.id)
    ).scalar()
    session.commit()
    if claimed is None:
        return None
    job = session.get(AuditJob, claimed)
    if job is None:  # deleted between the claim and this read
        return None
    if job.started_at is None:
        job.started_at = now
        session.commit()
    return job


def _held(job: AuditJob):
    """The job is still this claim's: not finished, and neither taken over nor re-claimed since
    (``worker`` and ``attempts`` as the claim left them)."""
    return and_(
        AuditJob.id == job.id,
        AuditJob.status.not_in((SUCCEEDED, FAILED)),
        AuditJob.worker.is_(None) if job.worker is None else AuditJob.worker == job.worker,
        AuditJob.attempts == job.attempts,
    )


def _retrying(write: Callable[[], bool], seconds: float) -> bool:
    """``write()``, retried while the database is unavailable, for up to ``seconds``."""
    deadline, pause = time.monotonic() + seconds, 0.25
    while True:
        try:
            return write()
        except OUTAGE_ERRORS as exc:
            if time.monotonic() + pause > deadline:
                raise
            log.warning("the database is unavailable (%s); retrying in %.1f s", type(exc).__name__, pause)
            time.sleep(pause)
            pause = min(pause * 2, 4.0)


class Heartbeat(threading.Thread):
    """Keeps a running job's heartbeat and progress fresh while the audit runs; an outage of the
    database skips beats (the job goes stale if it lasts) instead of ending the thread."""

    def __init__(self, factory: sessionmaker, job: AuditJob, interval: float):
        super().__init__(daemon=True)
        self.factory, self.job, self.job_id, self.interval = factory, job, job.id, interval
        self.rows_done = 0
        self.lost = False  # another worker holds the job now
        self._stop = threading.Event()

    def advance(self, n: int) -> None:
        self.rows_done += n

    def run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except OUTAGE_ERRORS as exc:
                log.warning("job %s: heartbeat skipped, the database is unavailable (%s)", self.job_id, exc)

    def beat(self) -> None:
        with self.factory() as session:
            result = session.execute(
                update(AuditJob).where(_held(self.job)).values(heartbeat_at=utcnow(), rows_done=self.rows_done)
            )
            session.commit()
        if getattr(result, "rowcount", 1) == 0 and not self.lost:
            self.lost = True
            log.warning(
                "job %s was taken over by another worker; this worker's result will not be recorded", self.job_id
            )

    def stop(self) -> None:
        self._stop.set()


def _write_inputs(job: AuditJob, work: Path, factory: sessionmaker) -> tuple[Path, dict[str, str]]:
    """The delivery and the reference files of a job, as files in its work directory."""
    (work / "inputs").mkdir(parents=True, exist_ok=True)
    source = work / "inputs" / job.input_name
    source.write_bytes(job.input_data)
    references = {}
    with factory() as session:
        for stored in session.scalars(select(AuditFile).where(AuditFile.job_id == job.id)):
            (work / stored.role).mkdir(exist_ok=True)
            path = work / stored.role / stored.name
            path.write_bytes(stored.data)
            references[stored.role] = str(path)
    return source, references


def run_job(job: AuditJob, scorer: Scorer, settings: Settings, factory: sessionmaker) -> None:
    """Run one claimed job to success or failure: the same audit as ``auditor audit``."""
    work = jobs_dir(settings) / job.id
    heartbeat = Heartbeat(factory, job, settings.job_heartbeat_seconds)
    heartbeat.start()
    try:
        source, references = _write_inputs(job, work, factory)
        options = job_options(job.params).model_copy(update=references)
        options.columns, unreadable, expected = plan([source], options.columns)
        with factory() as session:
            session.execute(update(AuditJob).where(_held(job)).values(rows_expected=expected))
            session.commit()
        tenant_scorer = scorer.with_reference(settings.tenant_reference_location(job.tenant_id))
        tasks = TenantTasks(settings.tenant_tasks_dir(job.tenant_id))  # references scored on first use
        with executor(settings.dask_scheduler) as runner:
            report = run_audit(
                [source],
                options,
                work / "out",
                tenant_scorer,
                settings,
                unreadable,
                heartbeat.advance,
                executor=runner,
                tasks=tasks,
            )
        if _retrying(lambda: _finish(factory, job, report, heartbeat.rows_done), FINISH_RETRY_SECONDS):
            shutil.rmtree(work, ignore_errors=True)
        else:  # taken over: the worker holding it now records it (and may be using the directory)
            log.warning("job %s: finished, but another worker holds it now; its result stands", job.id)
    except Exception as exc:  # noqa: BLE001 - a job's failure must not take the worker down
        _settle_failure(job, exc, settings, factory, work)
    finally:
        heartbeat.stop()


def _settle_failure(job: AuditJob, exc: Exception, settings: Settings, factory: sessionmaker, work: Path) -> None:
    """An outage leaves the job to be retried (taken over once stale, resuming its chunks) until
    its attempts are used up; anything else fails it, with the reason, and frees its directory."""
    what = unavailable(exc)
    if what is not None:
        reason = f"{what} was unavailable ({type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''})"
        if job.attempts < settings.job_max_attempts:
            log.warning("job %s: attempt %d interrupted, %s; it will be retried", job.id, job.attempts, reason)
            note = f"attempt {job.attempts} of {settings.job_max_attempts} interrupted: {reason}; it will be retried"
            try:
                with factory() as session:
                    session.execute(update(AuditJob).where(_held(job)).values(error=note))
                    session.commit()
            except OUTAGE_ERRORS:
                pass  # the database is what is unavailable: the stale heartbeat alone says it
            return
        message = f"every one of the job's {job.attempts} attempts was interrupted; the last: {reason}"
    elif isinstance(exc, ReadError | ValueError):
        message = str(exc)
    elif isinstance(exc, OSError) and exc.errno in DISK_FULL:
        message = f"the worker's disk is full ({exc.strerror}); the job's files did not fit: free space and resubmit"
    else:
        log.exception("job %s failed", job.id, exc_info=exc)
        message = f"internal error: {type(exc).__name__}: {exc}"
    shutil.rmtree(work, ignore_errors=True)  # a failed job is never resumed
    try:
        _retrying(lambda: _fail(factory, job, message), FINISH_RETRY_SECONDS)
    except OUTAGE_ERRORS:
        log.warning("job %s: could not record its failure (%s); it will be taken over", job.id, message)


def _finish(factory: sessionmaker, job: AuditJob, report, rows_done: int) -> bool:
    """Record the job's report and its vendor estimates, in one transaction, if the job is still
    this claim's (else nothing: False)."""
    stored = {
        "status": SUCCEEDED,
        "finished_at": utcnow(),
        "error": None,
        "rows_done": rows_done,
        "rows_expected": rows_done,
        "report_json": report.model_dump_json(),
        "report_html": render_html(report),
        "report_md": render_markdown(report),
    }
    with factory() as session:
        if getattr(session.execute(update(AuditJob).where(_held(job)).values(**stored)), "rowcount", 1) != 1:
            session.rollback()
            return False
        for vendor in report.vendors:
            session.add(
                VendorEstimate(
                    tenant_id=job.tenant_id,
                    job_id=job.id,
                    vendor=vendor.vendor,
                    n_scored=vendor.n_scored,
                    n_flagged=vendor.n_flagged,
                    flag_rate=vendor.flag_rate.estimate,
                    prevalence=vendor.prevalence.estimate,
                    ci_low=vendor.prevalence.ci_low,
                    ci_high=vendor.prevalence.ci_high,
                )
            )
        session.commit()
    return True


def _fail(factory: sessionmaker, job: AuditJob, message: str) -> bool:
    """Record the job's failure if the job is still this claim's."""
    with factory() as session:
        result = session.execute(
            update(AuditJob).where(_held(job)).values(status=FAILED, finished_at=utcnow(), error=message)
        )
        session.commit()
    return getattr(result, "rowcount", 1) == 1


def fail_exhausted(session: Session, settings: Settings) -> int:
    """Jobs whose workers died ``job_max_attempts`` times are failed instead of retried forever."""
    stale = utcnow() - timedelta(seconds=settings.job_stale_seconds)
    result = session.execute(
        update(AuditJob)
        .where(
            AuditJob.status == RUNNING, AuditJob.heartbeat_at < stale, AuditJob.attempts >= settings.job_max_attempts
        )
        .values(
            status=FAILED,
            finished_at=utcnow(),
            # the note of an interrupted attempt (an outage), if the last one left one
            error=func.coalesce(AuditJob.error + "; then ", "")
            + f"the job was interrupted {settings.job_max_attempts} times (its worker stopped or lost the database)",
        )
    )
    session.commit()
    return int(getattr(result, "rowcount", 0))


def worker_loop(
    settings: Settings,
    scorer: Scorer,
    poll_seconds: float = 1.0,
    once: bool = False,
    stop: threading.Event | None = None,
) -> None:
    """Process jobs until stopped (or until the queue is empty, with ``once``)."""
    factory = session_factory(settings.database)
    name = f"{socket.gethostname()}:{os.getpid()}"
    stop = stop or threading.Event()
    outage = 0  # polls in a row that found the database unavailable
    while not stop.is_set():
        try:
            with factory() as session:
                fail_exhausted(session, settings)
                job = claim_job(session, settings, name)
        except OUTAGE_ERRORS as exc:  # wait it out: the pool reconnects when the database is back
            outage += 1
            log.warning("worker %s: the database is unavailable (%s); polling again", name, type(exc).__name__)
            stop.wait(min(poll_seconds * 2**outage, 5.0))
            continue
        outage = 0
        if job is None:
            if once:
                return
            stop.wait(poll_seconds)
            continue
        log.info("worker %s runs job %s (attempt %d)", name, job.id, job.attempts)
        run_job(job, scorer, settings, factory)


def iso(moment) -> str | None:
    return moment.isoformat(timespec="seconds") + "Z" if moment else None


def job_status(job: AuditJob) -> dict:
    progress = None
    if job.rows_expected:
        progress = min(1.0, job.rows_done / job.rows_expected)
    elif job.status == SUCCEEDED:
        progress = 1.0
    return {
        "id": job.id,
        "status": job.status,
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "attempts": job.attempts,
        "rows_done": job.rows_done,
        "rows_expected": job.rows_expected,
        "progress": progress,
        "error": job.error,
        "params": job.params,
    }


def jobs_by_state(session: Session) -> dict[str, int]:
    rows = session.execute(text("SELECT status, COUNT(*) FROM audit_jobs GROUP BY status")).all()
    return {status: count for status, count in rows}
