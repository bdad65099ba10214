"""A real server on loopback, against SQLite and against PostgreSQL (+ Redis), talked to over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

POSTGRES_ADMIN_URL = os.environ.get("AUDITOR_TEST_POSTGRES_URL", "postgresql+psycopg://root@127.0.0.1:5432/test")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Service:
    """One deployment: its environment, a running web server, and helpers to run workers."""

    env: dict[str, str]
    port: int
    tmp: Path
    web: subprocess.Popen | None = None
    workers: list[subprocess.Popen] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, key: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"X-API-Key": key} if key else {}, timeout=120)

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "auditor.cli", *args], env=self.env, capture_output=True, text=True, check=True
        )

    def new_key(self, tenant: str) -> str:
        return self.cli("keys", "create", "--tenant", tenant).stdout.strip().splitlines()[-1]

    def start_web(self) -> None:
        log = (self.tmp / f"web-{time.time_ns()}.log").open("w")
        command = [sys.executable, "-m", "auditor.cli", "serve", "--port", str(self.port), "--workers", "0"]
        self.web = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 180
        while time.time() < deadline:
            if self.web.poll() is not None:
                raise RuntimeError(f"server exited: {(self.tmp / log.name).read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise RuntimeError("server did not become ready")

    def stop_web(self) -> None:
        if self.web and self.web.poll() is None:
            self.web.send_signal(signal.SIGINT)
            try:
                self.web.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.web.kill()

    def start_worker(self, **extra_env: str) -> subprocess.Popen:
        log = (self.tmp / f"worker-{time.time_ns()}.log").open("w")
        env = {**self.env, **extra_env}
        worker = subprocess.Popen(
            [sys.executable, "-m", "auditor.cli", "worker", "--poll", "0.2"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.workers.append(worker)
        return worker

    def stop_workers(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                worker.terminate()
        for worker in self.workers:
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
        self.workers.clear()


def _postgres_database() -> tuple[str, callable]:
    """A fresh database on the PostgreSQL server; returns its URL and a function dropping it."""
    import sqlalchemy as sa

    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"auditor_test_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        message = f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {exc}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"

    def drop() -> None:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def service(request, tmp_path_factory, redis_url):
    tmp = tmp_path_factory.mktemp(f"service-{request.param}")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AUDITOR_") or k in ("AUDITOR_CACHE_DIR", "AUDITOR_MODEL_CACHE_DIR", "AUDITOR_DATASETS_DIR")
    }
    env.update(
        {
            "AUDITOR_JOB_HEARTBEAT_SECONDS": "0.5",
            "AUDITOR_JOB_STALE_SECONDS": "4",
            "AUDITOR_MAX_TEXTS_PER_REQUEST": "32",
            "AUDITOR_MAX_UPLOAD_BYTES": str(2 * 1024 * 1024),
            "AUDITOR_MAX_ROWS_PER_AUDIT": "5000",
            "AUDITOR_CHUNK_ROWS": "16",
        }
    )
    drop = None
    if request.param == "sqlite":
        env["AUDITOR_DATABASE_URL"] = f"sqlite:///{tmp / 'auditor.db'}"
    else:
        env["AUDITOR_DATABASE_URL"], drop = _postgres_database()
        env["AUDITOR_REDIS_URL"] = redis_url
    service = Service(env=env, port=_free_port(), tmp=tmp)
    service.start_web()
    yield service
    service.stop_workers()
    service.stop_web()
    if drop:
        drop()


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_database(request, tmp_path):
    """URL of an empty database: a SQLite file, or a new database on the PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'auditor.sqlite'}"
        return
    url, drop = _postgres_database()
    yield url
    drop()


@pytest.fixture(scope="module")
def app(tmp_path_factory, request):
    """The service in-process on SQLite, without its models (tests that need no LM), one per module."""
    from api.main import create_app
    from api.settings import ServiceSettings

    tmp = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    return create_app(ServiceSettings(cache_dir=tmp, database_url=f"sqlite:///{tmp / 'auditor.db'}"), load_models=False)


@pytest.fixture(scope="module")
def client(app, request):
    """A client of :func:`app` with an API key of a tenant named after the module."""
    from fastapi.testclient import TestClient

    from api.keys import create_key

    with app.state.sessions() as session:
        key = create_key(session, request.module.__name__.rsplit(".", 1)[-1])[0]
    with TestClient(app, raise_server_exceptions=False, headers={"X-API-Key": key}) as client:
        yield client
