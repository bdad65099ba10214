"""A worker killed with SIGKILL in the middle of a chunk while another worker runs: the other
worker finishes its own job, takes the orphan over once its heartbeat is stale, resumes from the
chunks on disk, and each job is recorded once with every row once."""

from __future__ import annotations

import os
import signal

import pytest
from faults import assert_finished_once_with_every_row, delivery, submit, wait_until
from sqlalchemy import select

from api.db import AuditJob, session_factory

pytestmark = pytest.mark.reliability


def _holder(database: str, audit_id: str) -> int:
    """The pid of the worker holding the job (workers are named host:pid)."""
    with session_factory(database)() as session:
        worker = session.scalar(select(AuditJob.worker).where(AuditJob.id == audit_id))
    assert worker, audit_id
    return int(worker.rsplit(":", 1)[1])


def test_a_worker_killed_mid_chunk_is_taken_over_by_the_other_and_no_row_is_lost_or_doubled(deployment, texts):
    key = deployment.new_key("killed")
    # Slow chunks: a chunk is being scored nearly all of the time, so the kill lands mid-chunk.
    workers = [deployment.start_worker(RELIABILITY_CHUNK_SECONDS="0.3") for _ in range(2)]
    first, second = delivery(texts, 72, "first"), delivery(texts[100:], 72, "second")
    with deployment.client(key) as client:
        jobs = [submit(client, first), submit(client, second)]
        running = [wait_until(client, j, lambda s: s["status"] == "running" and s["rows_done"] >= 16) for j in jobs]
        assert all(s["attempts"] == 1 for s in running)
        victim_pid = _holder(deployment.database, jobs[0])
        victim = next(w for w in workers if w.pid == victim_pid)
        assert _holder(deployment.database, jobs[1]) != victim_pid  # the other worker runs the other job
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()

        taken_over = assert_finished_once_with_every_row(deployment, client, jobs[0], first)
        assert taken_over["attempts"] == 2
        report = client.get(f"/v1/audits/{jobs[0]}/report").json()
        # resumed from the killed worker's chunks, not scored again from the start
        assert report["configuration"]["resumed_chunks"] >= 2
        untouched = assert_finished_once_with_every_row(deployment, client, jobs[1], second)
        assert untouched["attempts"] == 1
        assert all(w.poll() is None for w in workers if w is not victim)
