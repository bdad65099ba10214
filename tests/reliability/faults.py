"""Helpers of the fault scenarios against the service's real processes: a private PostgreSQL and Redis in a
temporary folder on free ports (stopped and started by the tests, never the system's), the web
process and workers of ``launch.py`` (the service with the n-gram model in place of the LM, so
each process is ready in seconds), and helpers that look at what a job left behind."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pandas as pd
import pytest

LAUNCH = Path(__file__).with_name("launch.py")
ROOT = Path(__file__).parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


def needs(binary: str, found: object) -> None:
    if not found:
        pytest.skip(f"{binary} is not installed here: the fault tests run a private instance of it")


def _wait(ready, what: str, seconds: float = 60) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if ready():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not come up within {seconds} s")


class PrivatePostgres:
    """``initdb`` + ``pg_ctl`` in a temporary folder (as the ``postgres`` user when run as root:
    PostgreSQL refuses root), trust authentication on 127.0.0.1 and a free port."""

    def __init__(self, bindir: Path):
        self.bindir, self.port = bindir, free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="auditor-reliability-pg-"))
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user:
            os.chown(self.dir, pwd.getpwnam(self.user).pw_uid, -1)
        self.data = self.dir / "data"
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync")
        self.start()

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [str(self.bindir / tool), *args], check=True, capture_output=True, user=self.user, cwd=self.dir, timeout=120
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._run("pg_ctl", "start", "-w", "-D", str(self.data), "-l", str(self.dir / "log"), "-o", options)

    def stop(self) -> None:
        """A fast shutdown: every open connection is cut, as in a database restart or failover."""
        self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.data))

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        import sqlalchemy as sa

        name = f"auditor_{uuid.uuid4().hex[:10]}"
        admin = sa.create_engine(self.url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        return self.url(name)

    def close(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivateRedis:
    """``redis-server`` on a free port with its append-only file in a temporary folder (a restart
    keeps the data, as a deployment's persistent Redis does)."""

    def __init__(self, binary: str):
        self.binary, self.port = binary, free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="auditor-reliability-redis-"))
        self.process: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir)]
        command += ["--appendonly", "yes", "--save", "", "--protected-mode", "no"]
        log = (self.dir / "log").open("a")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        _wait(self._answers, "redis-server")

    def _answers(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_connect_timeout=1).ping())
        except redis.ConnectionError:
            return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class Deployment:
    """One deployment of the service: its environment, web process and workers. The processes are
    launch.py's fast configuration unless ``web_command`` / ``worker_command`` say otherwise (the
    web's port is appended to its command; benchmarks/load.py runs ``auditor serve`` and ``auditor worker``)."""

    env: dict[str, str]
    tmp: Path
    port: int = field(default_factory=free_port)
    web_command: list[str] = field(default_factory=lambda: [sys.executable, str(LAUNCH), "web"])
    worker_command: list[str] = field(default_factory=lambda: [sys.executable, str(LAUNCH), "worker"])
    ready_seconds: float = 120
    web: subprocess.Popen | None = None
    workers: list[subprocess.Popen] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database(self) -> str:
        return self.env["AUDITOR_DATABASE_URL"]

    @property
    def evidence(self) -> Path:
        return Path(self.env["RELIABILITY_EVIDENCE"])

    def client(self, key: str, timeout: float = 30) -> httpx.Client:
        """A client whose every call must be answered within ``timeout``: a hang fails the test."""
        return httpx.Client(base_url=self.url, headers={"X-API-Key": key}, timeout=timeout)

    def new_key(self, tenant: str) -> str:
        from api.db import session_factory
        from api.keys import create_key

        with session_factory(self.database)() as session:
            return create_key(session, tenant)[0]

    def _log(self, name: str):
        return (self.tmp / f"{name}-{time.time_ns()}.log").open("w")

    def start_web(self) -> None:
        command = [*self.web_command, str(self.port)]
        self.web = subprocess.Popen(command, env=self.env, stdout=self._log("web"), stderr=subprocess.STDOUT, cwd=ROOT)
        _wait(self._ready, "the web process", self.ready_seconds)

    def _ready(self) -> bool:
        if self.web is None or self.web.poll() is not None:
            raise RuntimeError(f"the web process exited: {self.logs('web')[-3000:]}")
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def stop_web(self, sig: int = signal.SIGTERM) -> None:
        if self.web and self.web.poll() is None:
            self.web.send_signal(sig)
            try:
                self.web.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.web.kill()
                self.web.wait()

    def start_worker(self, **extra_env: str) -> subprocess.Popen:
        env = {**self.env, **extra_env}
        worker = subprocess.Popen(
            self.worker_command, env=env, stdout=self._log("worker"), stderr=subprocess.STDOUT, cwd=ROOT
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
                worker.wait()
        self.workers.clear()

    def logs(self, prefix: str) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.tmp.glob(f"{prefix}-*.log")))

    def finishes(self, job_id: str) -> list[Path]:
        """The copies of ``items.parquet`` of every finish of the job a worker recorded."""
        return sorted(self.evidence.glob(f"{job_id}.*.parquet"))

    def vendor_estimates(self, job_id: str) -> int:
        from sqlalchemy import func, select

        from api.db import VendorEstimate, session_factory

        with session_factory(self.database)() as session:
            return int(session.scalar(select(func.count()).where(VendorEstimate.job_id == job_id)) or 0)


def service_env(tmp: Path, database_url: str, redis_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUDITOR_", "RELIABILITY_"))}
    for keep in ("AUDITOR_DATASETS_DIR",):
        if keep in os.environ:
            env[keep] = os.environ[keep]
    (tmp / "evidence").mkdir(exist_ok=True)
    env.update(
        {
            "AUDITOR_CACHE_DIR": str(tmp / "cache"),
            "AUDITOR_DATABASE_URL": database_url,
            "AUDITOR_JOB_HEARTBEAT_SECONDS": "0.3",
            "AUDITOR_JOB_STALE_SECONDS": "3",
            "AUDITOR_JOB_MAX_ATTEMPTS": "3",
            "AUDITOR_CHUNK_ROWS": "8",
            "AUDITOR_MAX_UPLOAD_BYTES": str(4 * 1024 * 1024),
            "RELIABILITY_EVIDENCE": str(tmp / "evidence"),
            "PYTHONPATH": str(ROOT),
        }
    )
    if redis_url:
        env["AUDITOR_REDIS_URL"] = redis_url
    return env


def delivery(texts: list[str], n: int, tag: str) -> list[dict]:
    """``n`` rows with unique ids (``item_id``), two vendors, a few workers each."""
    assert n <= len(texts), f"only {len(texts)} distinct texts"
    return [
        {"item_id": f"{tag}-{i:05d}", "answer": texts[i], "vendor": f"vendor-{i % 2}", "worker": f"w{i % 5}"}
        for i in range(n)
    ]


AUDIT_FIELDS = {"text_col": "answer", "vendor_col": "vendor", "worker_col": "worker", "id_col": "item_id"}


def submit(client: httpx.Client, rows: list[dict], key: str | None = None) -> str:
    headers = {"Idempotency-Key": key} if key else {}
    response = client.post("/v1/audits", json={"rows": rows, **AUDIT_FIELDS}, headers=headers)
    assert response.status_code in (200, 202), response.text
    return response.json()["id"]


def wait_until(client: httpx.Client, audit_id: str, condition, seconds: float = 120) -> dict:
    """Poll the audit's status until ``condition(status)``; outages on the way are retried as
    the service asks (503 + Retry-After), anything else is a failure."""
    deadline, status = time.time() + seconds, None
    while time.time() < deadline:
        response = client.get(f"/v1/audits/{audit_id}")
        if response.status_code == 503:
            assert "Retry-After" in response.headers, response.text
        else:
            assert response.status_code == 200, response.text
            status = response.json()
            if condition(status):
                return status
        time.sleep(0.2)
    raise AssertionError(f"audit {audit_id}: condition not met within {seconds} s; last status {status}")


def finished(status: dict) -> bool:
    return status["status"] in ("succeeded", "failed")


def assert_finished_once_with_every_row(service: Deployment, client: httpx.Client, audit_id: str, rows: list[dict]):
    """The job succeeded, one finish was recorded (one copy of items.parquet, one vendor estimate
    per vendor), and its items are the input rows, each exactly once."""
    status = wait_until(client, audit_id, finished)
    assert status["status"] == "succeeded", status
    copies = service.finishes(audit_id)
    assert len(copies) == 1, f"finished {len(copies)} times: {copies}"
    items = pd.read_parquet(copies[0])
    assert sorted(items["source_id"]) == sorted(r["item_id"] for r in rows)  # none lost, none twice
    texts = dict(zip(items["source_id"], items["text"], strict=True))
    assert all(texts[r["item_id"]] == r["answer"] for r in rows)
    assert service.vendor_estimates(audit_id) == len({r["vendor"] for r in rows})
    report = client.get(f"/v1/audits/{audit_id}/report").json()
    assert sum(v["n_scored"] for v in report["vendors"]) == len(rows)
    assert status["rows_done"] == status["rows_expected"] == len(rows)
    return status


def assert_outage_answer(response: httpx.Response) -> None:
    """During an outage: 503, a Retry-After header, a problem body saying what is unavailable."""
    assert response.status_code == 503, (response.status_code, response.text)
    assert int(response.headers["Retry-After"]) > 0
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "unavailable" in response.json()["detail"]
