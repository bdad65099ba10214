"""Load with faults on the REST service: locust against a real deployment (issue 22, item 5).

    pip install -e '.[bench]'     # locust
    python benchmarks/load.py [--tiers fast lm] [--concurrency 1 8 32] [--duration SECONDS] [--faults both|on|off]
        [--fast-duration 100] [--lm-duration 100] [--workers 2] [--audit-rows 40] [--audit-every 20]
        [--web-processes N] [--stale-seconds 10] [--db-down 3] [--out benchmarks/results/load.md]

The deployment is the one of the fault tests (``tests/reliability/faults.py``): a private PostgreSQL
and a private Redis in a temporary folder on free ports, ``auditor serve --workers 0`` (the real
models: the LM and the n-gram tier) and ``--workers`` separate ``auditor worker`` processes that
this script starts, kills and replaces itself; a fresh API key, no rate limit.

Each cell is one tier at one concurrency, with or without faults, for ``--duration`` seconds
(default 100 s for either tier: with the audits awaited after each cell and the models' start,
the default run's twelve cells take about 30 minutes on a 2-core machine; ``--duration 20`` is a
smoke run of about 12 minutes):

* locust (as a library: ``FastHttpUser``, ``constant(0)`` wait, users = concurrency) sends
  ``POST /v1/score`` with one text per request, each text a distinct real text (all splits of
  ../shared/datasets through ``auditor.corpus.load_corpus``), so no answer comes from the
  scorer's memo. A 200 must carry one result and name the tier; a 503 must carry Retry-After
  (the service's outage answer, counted apart, not an error; the user waits as told, at most
  5 s, before its next request); anything else (another status, a 503 without Retry-After, a
  timeout, a refused or reset connection) is an error, by kind.
  Latency percentiles are exact, over the 200 answers; req/s is 200 answers per second. At the
  end of the cell no request starts and those in flight are awaited (the cell's time includes
  that drain: an LM request at concurrency 32 takes seconds).
* a background submitter posts an audit of ``--audit-rows`` JSON rows (two vendors, distinct
  texts) every ``--audit-every`` seconds, each with its own ``Idempotency-Key`` (a 503 or a
  broken connection is retried with the same key, as a client should). After the cell every job
  is awaited (``--job-timeout``) and checked: succeeded, ``rows_done == rows_expected == rows``,
  the report's vendors hold every row exactly once (``n_items`` per vendor), one vendor estimate
  per vendor in the database. A job is *lost* when it does not finish in time or any of these
  fails; lost must be 0.
* with faults, at 40% of the cell one worker is SIGKILLed (one that is running a job, if one
  does within 15 s) and a replacement started; at 60% the private PostgreSQL is stopped (fast
  shutdown: every connection cut) and started again after ``--db-down`` seconds.

The service runs with ``AUDITOR_JOB_STALE_SECONDS=--stale-seconds`` (a killed worker's job is
taken over that long after its last heartbeat) and 8-row chunks, so a taken-over job resumes.
"""

from __future__ import annotations

# isort: off
# locust patches the standard library for gevent on import: first, before anything opens sockets.
from locust import FastHttpUser, constant, task
from locust.env import Environment

# isort: on

import argparse
import datetime
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import gevent
import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "reliability"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from api_load import cpu_name  # noqa: E402
from faults import Deployment, PrivatePostgres, PrivateRedis, postgres_bin, service_env  # noqa: E402

from auditor.corpus import load_corpus  # noqa: E402

VENDORS = ("vendor-a", "vendor-b")
AUDIT_FIELDS = {"text_col": "answer", "vendor_col": "vendor", "worker_col": "worker", "id_col": "item_id"}


class Texts:
    """Distinct texts, each handed out once (past the end: the same texts with a counter appended)."""

    def __init__(self, texts: list[str]):
        self.texts, self.used = texts, 0

    def take(self, n: int = 1) -> list[str]:
        out = []
        for _ in range(n):
            rounds, i = divmod(self.used, len(self.texts))
            self.used += 1
            out.append(self.texts[i] if rounds == 0 else f"{self.texts[i]} ({rounds})")
        return out

    @property
    def wrapped(self) -> bool:
        return self.used > len(self.texts)


@dataclass
class Cell:
    tier: str
    concurrency: int
    faults: bool
    duration: float
    latencies: list[float] = field(default_factory=list)  # seconds, 200 answers
    outage_answers: int = 0  # 503 with Retry-After
    errors: Counter = field(default_factory=Counter)
    jobs: list[dict] = field(default_factory=list)  # {id, rows, key, submit_retries, status, problem}
    submit_errors: Counter = field(default_factory=Counter)
    events: list[str] = field(default_factory=list)
    wall: float = 0.0

    @property
    def requests(self) -> int:
        return len(self.latencies) + self.outage_answers + sum(self.errors.values())

    def job_counts(self) -> dict[str, int]:
        return {
            "submitted": len(self.jobs),
            "succeeded": sum(j["status"] == "succeeded" and not j["problem"] for j in self.jobs),
            "failed": sum(j["status"] == "failed" for j in self.jobs),
            "lost": sum(j["status"] != "failed" and bool(j["problem"]) for j in self.jobs),
        }


def classify(status: int, headers, body: bytes | str | None, error: BaseException | None, tier: str) -> str | None:
    """None for a good answer, ``"outage"`` for a 503 with Retry-After, else the error's kind."""
    if status == 0:  # no answer: locust's FastHttpUser keeps the exception (a timeout, a refused connection)
        return type(error).__name__ if error is not None else "no answer"
    if status == 503:
        return "outage" if headers.get("Retry-After") else "503 without Retry-After"
    if status != 200:
        return f"HTTP {status}"
    try:
        answer = json.loads(body or b"")
        good = len(answer["results"]) == 1 and answer["tier"] == tier
    except (ValueError, KeyError, TypeError):
        good = False
    return None if good else "200 with a wrong answer"


def make_user(cell: Cell, texts: Texts, key: str, timeout: float) -> type[FastHttpUser]:
    class ScoreUser(FastHttpUser):
        wait_time = constant(0)
        network_timeout = timeout
        connection_timeout = timeout
        max_retries = 0

        @task
        def score(self) -> None:
            payload = {"texts": texts.take(), "tier": cell.tier}
            started = time.perf_counter()
            with self.client.post(
                "/v1/score", json=payload, headers={"X-API-Key": key}, name=f"score {cell.tier}", catch_response=True
            ) as response:
                elapsed = time.perf_counter() - started
                error = getattr(response, "error", None)
                kind = classify(response.status_code, response.headers or {}, response.content, error, cell.tier)
                if kind is None:
                    cell.latencies.append(elapsed)
                    response.success()
                elif kind == "outage":
                    cell.outage_answers += 1
                    response.success()
                else:
                    cell.errors[kind] += 1
                    response.failure(kind)
            if kind == "outage":  # as a client should: wait as told (at most 5 s), then go on
                gevent.sleep(min(float(response.headers["Retry-After"]), 5.0))

    return ScoreUser


def audit_rows(texts: Texts, n: int, tag: str) -> list[dict]:
    return [
        {"item_id": f"{tag}-{i:04d}", "answer": t, "vendor": VENDORS[i % 2], "worker": f"w{i % 5}"}
        for i, t in enumerate(texts.take(n))
    ]


def submitter(cell: Cell, url: str, key: str, texts: Texts, rows: int, every: float, until: float) -> None:
    """An audit every ``every`` seconds until ``until``; each retried with its key until accepted."""
    with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=30) as client:
        n = 0
        while time.monotonic() < until:
            next_at = time.monotonic() + every
            job_rows = audit_rows(texts, rows, f"{cell.tier}-{cell.concurrency}-{int(cell.faults)}-{n}")
            n += 1
            idem, retries, job_id = uuid.uuid4().hex, 0, None
            give_up = time.monotonic() + 120
            while job_id is None and time.monotonic() < give_up:
                try:
                    response = client.post(
                        "/v1/audits", json={"rows": job_rows, **AUDIT_FIELDS}, headers={"Idempotency-Key": idem}
                    )
                except httpx.TransportError as exc:
                    cell.submit_errors[type(exc).__name__] += 1
                    retries += 1
                    gevent.sleep(1)
                    continue
                if response.status_code in (200, 202):
                    job_id = response.json()["id"]
                elif response.status_code == 503 and response.headers.get("Retry-After"):
                    retries += 1
                    gevent.sleep(min(float(response.headers["Retry-After"]), 5))
                else:
                    cell.submit_errors[f"HTTP {response.status_code}"] += 1
                    retries += 1
                    gevent.sleep(1)
            if job_id is None:
                cell.jobs.append({"id": None, "rows": job_rows, "retries": retries, "status": "not submitted",
                                  "problem": "never accepted within 120 s"})  # fmt: skip
            else:
                cell.jobs.append({"id": job_id, "rows": job_rows, "retries": retries, "status": "?", "problem": ""})
            gevent.sleep(max(0.0, next_at - time.monotonic()))


def in_thread(function, *args):
    """A blocking call (the database driver's) in a real thread, so locust's users go on meanwhile."""
    return gevent.get_hub().threadpool.apply(function, args)


def running_workers(database: str) -> list[str]:
    import sqlalchemy as sa

    engine = sa.create_engine(database)
    try:
        with engine.connect() as connection:
            return [w for (w,) in connection.execute(sa.text("SELECT worker FROM audit_jobs WHERE status='running'"))]
    finally:
        engine.dispose()


def kill_a_worker(cell: Cell, deployment: Deployment, started: float) -> None:
    """SIGKILL a live worker, preferably one running a job (waiting up to 15 s for one), and start another."""
    alive = {w.pid: w for w in deployment.workers if w.poll() is None}
    victim, busy = None, False
    deadline = time.monotonic() + 15
    while victim is None and time.monotonic() < deadline:
        try:
            pids = {int(w.rsplit(":", 1)[1]) for w in in_thread(running_workers, deployment.database) if w}
        except Exception as exc:  # noqa: BLE001 - recorded; the kill goes on
            cell.events.append(f"could not read the running jobs: {type(exc).__name__}")
            break
        busy_pids = [pid for pid in alive if pid in pids]
        if busy_pids:
            victim, busy = alive[busy_pids[0]], True
        else:
            gevent.sleep(0.5)
    if victim is None:
        victim = next(iter(alive.values()))
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    at = time.monotonic() - started
    cell.events.append(f"{at:.0f} s: worker {victim.pid} SIGKILLed ({'running a job' if busy else 'idle'})")
    deployment.start_worker()


def restart_database(cell: Cell, postgres: PrivatePostgres, started: float, down: float) -> None:
    at = time.monotonic() - started
    postgres.stop()
    gevent.sleep(down)
    postgres.start()
    took = time.monotonic() - started - at
    cell.events.append(f"{at:.0f} s: PostgreSQL stopped (fast), started again; no database for {took:.1f} s")


def faults(cell: Cell, deployment: Deployment, postgres: PrivatePostgres, started: float, down: float) -> None:
    gevent.sleep(max(0.0, started + 0.4 * cell.duration - time.monotonic()))
    kill_a_worker(cell, deployment, started)
    gevent.sleep(max(0.0, started + 0.6 * cell.duration - time.monotonic()))
    restart_database(cell, postgres, started, down)


def check_jobs(cell: Cell, deployment: Deployment, url: str, key: str, timeout: float) -> None:
    """Await every job of the cell and check that each holds every row exactly once."""
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=30) as client:
        for job in cell.jobs:
            if job["id"] is None:
                continue
            status: dict = {}
            while time.monotonic() < deadline:
                try:
                    response = client.get(f"/v1/audits/{job['id']}")
                except httpx.TransportError:
                    gevent.sleep(1)
                    continue
                if response.status_code == 200:
                    status = response.json()
                    if status["status"] in ("succeeded", "failed"):
                        break
                gevent.sleep(0.5)
            job["status"] = status.get("status", "?")
            job["attempts"] = status.get("attempts")
            if job["status"] == "failed":
                job["problem"] = status.get("error") or "failed without a reason"
                continue
            if job["status"] != "succeeded":
                job["problem"] = f"not finished within {timeout:.0f} s (last status {job['status']})"
                continue
            n = len(job["rows"])
            problems = []
            if not status["rows_done"] == status["rows_expected"] == n:
                problems.append(f"rows_done {status['rows_done']}, rows_expected {status['rows_expected']}, sent {n}")
            report = client.get(f"/v1/audits/{job['id']}/report").json()
            expected = Counter(r["vendor"] for r in job["rows"])
            got = {v["vendor"]: v["n_items"] for v in report["vendors"]}
            if got != dict(expected):
                problems.append(f"report items per vendor {got}, sent {dict(expected)}")
            estimates = in_thread(deployment.vendor_estimates, job["id"])
            if estimates != len(expected):
                problems.append(f"{estimates} vendor estimates for {len(expected)} vendors")
            job["problem"] = "; ".join(problems)


def run_cell(
    cell: Cell, deployment: Deployment, postgres: PrivatePostgres, key: str, texts: Texts, args: argparse.Namespace
) -> Cell:
    url = deployment.url
    # stop_timeout: at the end of the cell no new request starts, and those in flight are awaited
    environment = Environment(
        user_classes=[make_user(cell, texts, key, args.timeout)], host=url, stop_timeout=args.timeout + 10
    )
    runner = environment.create_local_runner()
    started = time.monotonic()
    until = started + cell.duration
    background = [gevent.spawn(submitter, cell, url, key, texts, args.audit_rows, args.audit_every, until)]
    if args.audit_rows <= 0:
        background[0].kill()
    if cell.faults:
        background.append(gevent.spawn(faults, cell, deployment, postgres, started, args.db_down))
    runner.start(cell.concurrency, spawn_rate=cell.concurrency)
    gevent.sleep(max(0.0, until - time.monotonic()))
    runner.quit()
    cell.wall = time.monotonic() - started
    gevent.joinall(background, raise_error=True)
    ended = time.monotonic()
    check_jobs(cell, deployment, url, key, args.job_timeout)
    cell.events.append(f"jobs awaited {time.monotonic() - ended:.0f} s after the cell")
    return cell


def percentile(values: list[float], q: float) -> str:
    return f"{np.percentile(np.array(values) * 1000, q):.0f}" if values else "-"


def summary(cell: Cell) -> dict:
    jobs = cell.job_counts()
    errors = ", ".join(f"{kind} {n}" for kind, n in cell.errors.most_common()) or "0"
    return {
        "concurrency": cell.concurrency,
        "faults": "yes" if cell.faults else "no",
        "requests": cell.requests,
        "200": len(cell.latencies),
        "503 + Retry-After": cell.outage_answers,
        "req/s": f"{len(cell.latencies) / cell.wall:.1f}",
        "p50 ms": percentile(cell.latencies, 50),
        "p95 ms": percentile(cell.latencies, 95),
        "p99 ms": percentile(cell.latencies, 99),
        "errors by kind": errors,
        "jobs submitted": jobs["submitted"],
        "succeeded": jobs["succeeded"],
        "failed": jobs["failed"],
        "lost": jobs["lost"],
    }


def markdown(cells: list[Cell], args: argparse.Namespace, command: str, wrapped: bool) -> str:
    lines = []
    if args.smoke_label:
        lines += [f"**{args.smoke_label}**", ""]
    lines += [
        f"`{command}`",
        "",
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; CPU: {cpu_name()}",
        f"- deployment: private PostgreSQL and Redis, `auditor serve --workers 0`"
        f"{f' --web-processes {args.web_processes}' if args.web_processes else ''}, {args.workers} `auditor worker` "
        f"processes; JOB_STALE_SECONDS {args.stale_seconds:g}, chunks of 8 rows",
        f"- each cell {', '.join(f'{t} {d:g} s' for t, d in args.durations.items())} of locust users (one distinct text per `POST /v1/score`, no wait), "
        f"and an audit of {args.audit_rows} JSON rows every {args.audit_every:g} s, awaited after the cell",
        "- faults: at 40% of the cell one worker SIGKILLed (one running a job when there is one) and replaced; "
        f"at 60% PostgreSQL stopped (fast shutdown) and started again {args.db_down:g} s later",
        "- latency percentiles over the 200 answers, req/s = 200 answers per second of the cell (its duration and "
        "the drain of the requests in flight at its end); 503 with Retry-After is the "
        "service's outage answer (not an error); errors: any other status, a 503 without Retry-After, timeouts "
        f"({args.timeout:g} s) and connection errors",
        "- a job is lost when it does not finish within the timeout or its rows are not each in its report once "
        "(`rows_done`, the report's items per vendor, the vendor estimates in the database)",
    ]
    if wrapped:
        lines.append("- the distinct texts ran out: later requests sent texts again with a counter appended")
    for tier in dict.fromkeys(c.tier for c in cells):
        rows = [summary(c) for c in cells if c.tier == tier]
        header = list(rows[0])
        lines += ["", f"### Tier `{tier}`", "", "| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
        lines += ["| " + " | ".join(str(r[h]) for h in header) + " |" for r in rows]
    notes = []
    for c in cells:
        name = f"{c.tier}, concurrency {c.concurrency}, faults {'yes' if c.faults else 'no'}"
        for event in c.events:
            notes.append(f"- {name}: {event}")
        if c.submit_errors:
            notes.append(f"- {name}: audit submissions retried after {dict(c.submit_errors)}")
        retried = sum(j["retries"] for j in c.jobs)
        if retried:
            notes.append(f"- {name}: {retried} audit submission retries (same Idempotency-Key)")
        for job in c.jobs:
            if job["problem"]:
                notes.append(f"- {name}: job {job['id']} {job['status']}: {job['problem']}")
            elif (job.get("attempts") or 1) > 1:
                notes.append(f"- {name}: job {job['id']} succeeded after {job['attempts']} attempts")
    if notes:
        lines += ["", "### Faults and jobs", "", *notes]
    return "\n".join(lines) + "\n"


def deployment_for(args: argparse.Namespace, postgres: PrivatePostgres, redis: PrivateRedis, tmp: Path) -> Deployment:
    env = service_env(tmp, postgres.new_database(), redis.url)
    # The real models: a cache folder of its own (jobs, references) whose models are the user's.
    from detectors.store import default_cache_dir

    models = Path(os.environ.get("AUDITOR_CACHE_DIR") or default_cache_dir()) / "models"
    (tmp / "cache").mkdir(exist_ok=True)
    if models.exists():
        (tmp / "cache" / "models").symlink_to(models)
    env.update(
        {
            "AUDITOR_RATE_LIMIT_PER_MINUTE": "0",  # one key sends every request: the service is measured, not its limit
            "AUDITOR_JOB_STALE_SECONDS": f"{args.stale_seconds:g}",
            "AUDITOR_JOB_HEARTBEAT_SECONDS": f"{max(args.stale_seconds / 5, 0.3):g}",
        }
    )
    serve = [sys.executable, "-m", "auditor.cli", "serve", "--workers", "0"]
    if args.web_processes:
        serve += ["--web-processes", str(args.web_processes)]
    return Deployment(
        env=env,
        tmp=tmp,
        web_command=[*serve, "--port"],
        worker_command=[sys.executable, "-m", "auditor.cli", "worker", "--poll", "0.5"],
        ready_seconds=600,
    )


def new_key(env: dict[str, str]) -> str:
    command = [sys.executable, "-m", "auditor.cli", "keys", "create", "--tenant", "load"]
    return subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]


def warm_up(url: str, key: str, texts: Texts, tiers: list[str]) -> None:
    with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=300) as client:
        for tier in tiers:
            for text in texts.take(8):
                client.post("/v1/score", json={"texts": [text], "tier": tier}).raise_for_status()


def wait_for_workers(deployment: Deployment, seconds: float = 600) -> None:
    """Until every worker has loaded its models (its log says so) or exited."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if any(w.poll() is not None for w in deployment.workers):
            raise RuntimeError(f"a worker exited: {deployment.logs('worker')[-3000:]}")
        logs = [p.read_text(errors="replace") for p in deployment.tmp.glob("worker-*.log")]
        if len(logs) == len(deployment.workers) and all("worker ready" in log for log in logs):
            return
        gevent.sleep(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiers", nargs="+", choices=("fast", "lm"), default=["fast", "lm"])
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        help="seconds per cell of either tier (default: --fast-duration, --lm-duration)",
    )
    parser.add_argument("--fast-duration", type=float, default=100, help="seconds per fast-tier cell")
    parser.add_argument("--lm-duration", type=float, default=100, help="seconds per lm-tier cell")
    parser.add_argument("--faults", choices=("off", "on", "both"), default="both", help="cells without/with faults")
    parser.add_argument("--workers", type=int, default=2, help="auditor worker processes")
    parser.add_argument("--web-processes", type=int, default=None, help="passed to auditor serve when given")
    parser.add_argument("--audit-rows", type=int, default=40, help="rows per background audit (0: none)")
    parser.add_argument("--audit-every", type=float, default=20, help="seconds between background audits")
    parser.add_argument("--job-timeout", type=float, default=600, help="seconds to await a cell's audits")
    parser.add_argument("--stale-seconds", type=float, default=10, help="AUDITOR_JOB_STALE_SECONDS")
    parser.add_argument("--db-down", type=float, default=3, help="seconds PostgreSQL stays stopped")
    parser.add_argument("--timeout", type=float, default=60, help="seconds a /v1/score request may take")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke-label", default="", help="a line that heads the results (e.g. a short smoke run)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "load.md")
    args = parser.parse_args()
    command = "python benchmarks/load.py " + shlex.join(sys.argv[1:])
    durations = {"fast": args.duration or args.fast_duration, "lm": args.duration or args.lm_duration}
    args.durations = {t: durations[t] for t in args.tiers}
    if args.web_processes:
        serve_help = subprocess.run(
            [sys.executable, "-m", "auditor.cli", "serve", "--help"], capture_output=True, text=True, check=True
        ).stdout
        if "--web-processes" not in serve_help:
            raise SystemExit("this auditor serve has no --web-processes option")
    bindir = postgres_bin()
    if bindir is None or not (bindir / "initdb").exists():
        raise SystemExit("PostgreSQL (initdb, pg_ctl) is not installed")
    redis_binary = subprocess.run(["which", "redis-server"], capture_output=True, text=True).stdout.strip()
    if not redis_binary:
        raise SystemExit("redis-server is not installed")

    corpus = load_corpus()
    pool = corpus[corpus["text"].str.strip().str.len().ge(20)].drop_duplicates("text")
    texts = Texts(pool.sample(frac=1.0, random_state=args.seed)["text"].tolist())

    tmp = Path(tempfile.mkdtemp(prefix="auditor-load-"))
    postgres, redis = PrivatePostgres(bindir), PrivateRedis(redis_binary)
    deployment = deployment_for(args, postgres, redis, tmp)
    cells: list[Cell] = []
    try:
        deployment.start_web()
        for _ in range(args.workers):
            deployment.start_worker()
        key = new_key(deployment.env)
        wait_for_workers(deployment)
        warm_up(deployment.url, key, texts, args.tiers)
        print(f"deployment ready in {tmp}", flush=True)
        fault_modes = {"off": [False], "on": [True], "both": [False, True]}[args.faults]
        for tier in args.tiers:
            for concurrency in args.concurrency:
                for with_faults in fault_modes:
                    cell = Cell(tier, concurrency, with_faults, durations[tier])
                    cells.append(run_cell(cell, deployment, postgres, key, texts, args))
                    print(summary(cell), *cell.events, flush=True)
                    # the next cell starts with every worker alive
                    for worker in [w for w in deployment.workers if w.poll() is not None]:
                        deployment.workers.remove(worker)
                    while len(deployment.workers) < args.workers:
                        deployment.start_worker()
    finally:
        deployment.stop_workers()
        deployment.stop_web()
        postgres.close()
        redis.close()
    text = markdown(cells, args, command, texts.wrapped)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    lost = sum(c.job_counts()["lost"] for c in cells)
    if lost:
        raise SystemExit(f"{lost} jobs lost (logs in {tmp})")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
