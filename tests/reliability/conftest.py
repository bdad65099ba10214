"""Fixtures of the fault scenarios (see faults.py): a private PostgreSQL and Redis per session,
a fresh deployment of the service (database, cache folder, web process) per test."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from faults import Deployment, PrivatePostgres, PrivateRedis, needs, postgres_bin, service_env


@pytest.fixture(scope="session")
def postgres() -> Iterator[PrivatePostgres]:
    bindir = postgres_bin()
    needs("PostgreSQL (initdb, pg_ctl)", bindir and (bindir / "initdb").exists())
    server = PrivatePostgres(bindir)  # type: ignore[arg-type]
    yield server
    server.close()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[PrivateRedis]:
    binary = shutil.which("redis-server")
    needs("redis-server", binary)
    server = PrivateRedis(binary)  # type: ignore[arg-type]
    yield server
    server.close()


@pytest.fixture(scope="session")
def service(tmp_path_factory, postgres, redis_server) -> Iterator[Deployment]:
    """One deployment for the session: a database on the private PostgreSQL, the private Redis,
    a web process (each test uses its own tenant; workers are the tests' own)."""
    tmp = tmp_path_factory.mktemp("reliability")
    deployment = Deployment(env=service_env(tmp, postgres.new_database(), redis_server.url), tmp=tmp)
    deployment.start_web()
    yield deployment
    deployment.stop_workers()
    deployment.stop_web()


@pytest.fixture
def deployment(service: Deployment) -> Iterator[Deployment]:
    """The session's deployment with its web process up; the test's workers stopped after it."""
    if service.web is None or service.web.poll() is not None:
        service.start_web()
    yield service
    service.stop_workers()


@pytest.fixture(scope="session")
def texts(mini_corpus) -> list[str]:
    """Distinct short texts of the shipped mini corpus (each is scored, none is remembered)."""
    pool = mini_corpus[mini_corpus.text.str.len().between(120, 600)].drop_duplicates("text")
    return pool.sample(frac=1.0, random_state=22).text.tolist()
