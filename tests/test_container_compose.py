"""compose.yaml brought up with podman-compose (``make test-container``, after the image tests):
web, two audit workers, PostgreSQL and Redis, started in compose's order (podman-compose 1.0
ignores ``depends_on`` conditions, so each stage waits here for the one before: the database's
health check, then the one-shot migration's exit code), then real HTTP requests to web on the
published port 8000. The web service runs no workers of its own (``--workers 0``), so an audit
that succeeds was claimed from PostgreSQL by a worker container; a reference text lands in Redis.

PostgreSQL and Redis are stand-ins for the official images (scripts/container/standins/), made
from Debian's packages; the auditor's image is the one the image tests ran. Skipped unless
AUDITOR_TEST_COMPOSE is set (scripts/container/test.sh sets it)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.container

REPO = Path(__file__).resolve().parents[1]
PROJECT = os.environ.get("AUDITOR_TEST_COMPOSE", "")
if not PROJECT:
    pytest.skip("the compose tests run through `make test-container` (AUDITOR_TEST_COMPOSE)", allow_module_level=True)

PODMAN = shutil.which("podman") or "podman"
FILES = ["-f", str(REPO / "compose.yaml"), "-f", str(REPO / "scripts" / "container" / "compose.standins.yaml")]
READY_TIMEOUT = float(os.environ.get("AUDITOR_TEST_READY_TIMEOUT", "600"))
AUDIT_TIMEOUT = float(os.environ.get("AUDITOR_TEST_AUDIT_TIMEOUT", "1200"))
WEB = "http://127.0.0.1:8000"


def run(*command: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if check:
        assert done.returncode == 0, (
            f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        )
    return done


def compose(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run("podman-compose", "-p", PROJECT, *FILES, *args, check=check)


def container(service: str, number: int = 1) -> str:
    return f"{PROJECT}_{service}_{number}"


def logs(service: str) -> str:
    done = run(PODMAN, "logs", "--tail", "40", container(service), check=False)
    return f"--- {service}:\n{done.stdout}{done.stderr}"


def wait_for(what: str, ready, timeout: float, *services: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if ready():
            return round(time.monotonic() - started, 1)
        time.sleep(2)
    pytest.fail(f"{what}: not after {timeout:.0f} s\n" + "\n".join(logs(s) for s in services))


def down() -> None:
    """The stack's containers and volumes gone, even where runc reports a stop as failed."""
    compose("down", "-v", check=False)
    label = f"label=io.podman.compose.project={PROJECT}"
    for _ in range(3):
        left = run(PODMAN, "ps", "--all", "--quiet", "--filter", label).stdout.split()
        if not left:
            break
        run(PODMAN, "rm", "--force", "--time", "5", *left, check=False)
    volumes = run(PODMAN, "volume", "ls", "--quiet", "--filter", label).stdout.split()
    if volumes:
        run(PODMAN, "volume", "rm", "--force", *volumes, check=False)


def web_ready() -> bool:
    try:
        return httpx.get(f"{WEB}/readyz", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture(scope="module")
def stack() -> Iterator[dict]:
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", 8000)) != 0, "port 8000 is taken: compose.yaml publishes web there"
    timings = {}
    down()
    try:
        started = time.monotonic()
        compose("up", "-d", "--no-build", "postgres", "redis")
        timings["postgres healthy (s)"] = wait_for(
            "the postgres health check",
            lambda: run(PODMAN, "healthcheck", "run", container("postgres"), check=False).returncode == 0,
            120,
            "postgres",
        )
        compose("up", "-d", "--no-build", "migrate")
        code = run(PODMAN, "wait", container("migrate"), timeout=300).stdout.strip()
        assert code == "0", f"the migration exited with {code}\n{logs('migrate')}"
        compose("up", "-d", "--no-build", "web", "worker")
        timings["web ready (s)"] = wait_for("web's /readyz", web_ready, READY_TIMEOUT, "web", "worker")
        key = run(PODMAN, "exec", container("web"), "auditor", "keys", "create", "--tenant", "acme").stdout.split()[-1]
        with httpx.Client(base_url=WEB, headers={"X-API-Key": key}, timeout=300) as client:
            yield {"client": client, "timings": timings}
        timings["total (s)"] = round(time.monotonic() - started, 1)
    finally:
        print(f"\ncompose timings: {timings}")
        down()


def test_every_service_runs(stack):
    def state(name: str) -> str:
        return run(
            PODMAN, "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name, check=False
        ).stdout.strip()

    for name in ("web", "postgres", "redis"):
        assert state(container(name)) == "running 0", logs(name)
    for number in (1, 2):  # deploy.replicas: 2
        assert state(container("worker", number)) == "running 0", logs("worker")
    assert state(container("migrate")) == "exited 0", logs("migrate")
    # compose.yaml's health checks pass in their containers (run with `podman exec`: podman-compose 1.0
    # mangles the quoting of CMD-form checks, so `podman healthcheck run` would test its translation)
    services = yaml.safe_load((REPO / "compose.yaml").read_text())["services"]
    for name in ("web", "postgres", "redis"):
        kind, *test = services[name]["healthcheck"]["test"]
        command = ["sh", "-c", *test] if kind == "CMD-SHELL" else test
        checked = run(PODMAN, "exec", container(name), *command, check=False)
        assert checked.returncode == 0, f"{name}'s health check {command} failed: {checked.stderr[-2000:]}"


def test_score_and_the_reference_index_in_redis(stack):
    client = stack["client"]
    text = "As an AI language model, I cannot browse the internet, but here is a concise summary of the key points."
    added = client.post("/v1/reference", json={"texts": [{"text": text, "label": "machine", "source": "compose-test"}]})
    assert added.status_code == 200, added.text
    assert added.json()["entries"] >= 1
    keys = run(PODMAN, "exec", container("redis"), "redis-cli", "dbsize").stdout.strip()
    assert int(keys) > 0, "the reference index is not in Redis"
    scored = client.post("/v1/score", json={"texts": [text, "lol forgot my wallet again, typical monday"]})
    assert scored.status_code == 200, scored.text
    first, second = scored.json()["results"]
    assert first["flagged"] and 0.0 <= second["llm_probability"] <= 1.0, first


def test_an_audit_is_run_by_a_worker_container(stack):
    client = stack["client"]
    frame = pd.read_csv(REPO / "examples" / "delivery.csv").groupby("vendor").head(20)
    started = time.monotonic()
    submitted = client.post(
        "/v1/audits",
        json={
            "rows": frame.to_dict("records"),
            "text_col": "text",
            "vendor_col": "vendor",
            "worker_col": "worker_id",
            "id_col": "item_id",
        },
    )
    assert submitted.status_code == 202, submitted.text
    location = submitted.headers["Location"]
    status = submitted.json()
    while status["status"] in ("queued", "running"):
        assert time.monotonic() - started < AUDIT_TIMEOUT, status
        time.sleep(3)
        status = client.get(location).json()
    stack["timings"][f"audit {len(frame)} rows (s)"] = round(time.monotonic() - started, 1)
    assert status["status"] == "succeeded" and status["rows_done"] == len(frame), status
    report = client.get(f"{location}/report").json()
    assert {vendor["vendor"]: vendor["n_items"] for vendor in report["vendors"]} == frame.groupby(
        "vendor"
    ).size().to_dict()
    # the job lives in PostgreSQL
    query = f"SELECT status FROM audit_jobs WHERE id = '{status['id']}'"
    stored = run(PODMAN, "exec", container("postgres"), "psql", "-U", "auditor", "-d", "auditor", "-tAc", query).stdout
    assert stored.strip() == "succeeded"
