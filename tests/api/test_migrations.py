"""Schema migrations: processes that start together (web, workers, `auditor migrate`) all
bring the same database to the newest schema without tripping over each other."""

from __future__ import annotations

import subprocess
import sys

import sqlalchemy as sa

PROCESSES = 4


def test_processes_migrating_one_fresh_database_at_once_all_succeed(fresh_database):
    migrate = f"from api.db import migrate; migrate({fresh_database!r})"
    processes = [
        subprocess.Popen([sys.executable, "-c", migrate], stderr=subprocess.PIPE, text=True) for _ in range(PROCESSES)
    ]
    failures = [error[-2000:] for p in processes if (error := p.communicate()[1]) and p.returncode != 0]
    assert failures == []
    engine = sa.create_engine(fresh_database)
    try:
        with engine.connect() as connection:
            versions = connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
            tables = set(sa.inspect(connection).get_table_names())
    finally:
        engine.dispose()
    assert len(versions) == 1 and {"audit_jobs", "tenants", "idempotency_keys", "alembic_version"} <= tables
