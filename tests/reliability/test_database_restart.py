"""PostgreSQL restarted while an audit job runs: clients get 503 + Retry-After meanwhile, the
job finishes exactly once with every row, and web process and worker carry on by themselves."""

from __future__ import annotations

import time

import pytest
from faults import (
    assert_finished_once_with_every_row,
    assert_outage_answer,
    delivery,
    submit,
    wait_until,
)

pytestmark = pytest.mark.reliability


def test_a_database_restart_mid_job_loses_nothing_and_counts_nothing_twice(deployment, postgres, texts):
    key = deployment.new_key("db-restart")
    rows = delivery(texts, 96, "db")
    worker = deployment.start_worker(RELIABILITY_CHUNK_SECONDS="0.25")
    with deployment.client(key) as client:
        audit_id = submit(client, rows)
        wait_until(client, audit_id, lambda s: s["status"] == "running" and s["rows_done"] > 0)
        postgres.stop()
        try:
            assert_outage_answer(client.get(f"/v1/audits/{audit_id}"))
            assert_outage_answer(client.post("/v1/audits", json={"rows": rows[:3], "text_col": "answer"}))
            assert_outage_answer(client.post("/v1/score", json={"texts": ["a text"], "tier": "fast"}))
            ready = client.get("/readyz")
            assert ready.status_code == 503 and "Retry-After" in ready.headers
            assert ready.json()["checks"]["database"] is False
            time.sleep(4)  # longer than AUDITOR_JOB_STALE_SECONDS: heartbeats fail meanwhile
        finally:
            postgres.start()
        assert_finished_once_with_every_row(deployment, client, audit_id, rows)
        assert worker.poll() is None, deployment.logs("worker")[-3000:]  # the worker lived through it
        assert client.get("/readyz").status_code == 200
        postgres.stop()  # again, while the worker waits for jobs
        try:
            time.sleep(1.5)
        finally:
            postgres.start()
        assert worker.poll() is None, deployment.logs("worker")[-3000:]
        after = delivery(texts[200:], 16, "after")
        assert_finished_once_with_every_row(deployment, client, submit(client, after), after)
