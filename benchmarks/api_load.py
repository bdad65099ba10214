"""Load on the REST service: a real server on loopback, real texts, the embedded model warm.

    python benchmarks/api_load.py [--tier lm|fast] [--requests 96] [--audit-rows 1000] [--out benchmarks/results/api_load.md]

* ``POST /v1/score`` of ``--tier`` (``lm``, the default, or ``fast``: the n-gram model) with 1
  text and with 32 texts per request, at concurrency 1, 8 and 32 (that many clients, each
  sending its next request when the last one answered): p50/p95/p99 latency, texts/s and
  errors. Every text is sent once only, so no answer comes from the scorer's memo of texts
  it has seen. Every answer must name the tier asked for (else it counts as an error).
* ``POST /v1/audits`` of ``--audit-rows`` rows (JSON rows), timed from submission to
  ``succeeded`` with the one worker ``auditor serve`` starts: rows per minute (``0``: no audit).

The service is warm: both tiers' models loaded (/readyz 200) and 16 requests sent before measuring.

The server runs as ``auditor serve`` in its own process with a fresh SQLite database;
texts are the test split of ../shared/datasets (answers, summaries, essays as they come).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from auditor.corpus import load_corpus  # noqa: E402

SCENARIOS = [(1, 1), (1, 8), (1, 32), (32, 1), (32, 8), (32, 32)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(env: dict[str, str], port: int, log: Path, workers: int = 1) -> subprocess.Popen:
    command = [sys.executable, "-m", "auditor.cli", "serve", "--port", str(port), "--workers", str(workers)]
    server = subprocess.Popen(command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while time.time() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text()[-3000:]}")
        try:
            ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
            if ready.status_code == 200 and ready.json()["tiers"]["fast"] == "loaded":
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError("server did not become ready")


async def load(
    url: str, key: str, texts: list[str], per_request: int, concurrency: int, n_requests: int, tier: str = "lm"
) -> dict:
    """``concurrency`` clients send ``n_requests`` requests of ``per_request`` distinct texts to ``tier``."""
    batches = [texts[i * per_request : (i + 1) * per_request] for i in range(n_requests)]
    latencies: list[float] = []
    errors = 0
    models: set[str | None] = set()
    queue: asyncio.Queue = asyncio.Queue()
    for batch in batches:
        queue.put_nowait(batch)

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal errors
        while not queue.empty():
            batch = queue.get_nowait()
            started = time.perf_counter()
            response = await client.post("/v1/score", json={"texts": batch, "tier": tier})
            latencies.append(time.perf_counter() - started)
            answer = response.json() if response.status_code == 200 else {}
            errors += len(answer.get("results", ())) != len(batch) or answer.get("tier") != tier
            models.add(answer.get("model"))

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": key}, timeout=300, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
        wall = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {
        "tier": tier,
        "model": ", ".join(sorted(str(m) for m in models)),
        "texts/request": per_request,
        "concurrency": concurrency,
        "requests": len(batches),
        "p50 ms": float(np.percentile(ms, 50)),
        "p95 ms": float(np.percentile(ms, 95)),
        "p99 ms": float(np.percentile(ms, 99)),
        "texts/s": len(batches) * per_request / wall,
        "errors": errors,
    }


def audit_rate(url: str, key: str, texts: list[str]) -> dict:
    rows = [{"text": t, "vendor": f"vendor-{i % 3}", "worker": f"w{i % 40}"} for i, t in enumerate(texts)]
    with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=300) as client:
        started = time.perf_counter()
        response = client.post(
            "/v1/audits", json={"rows": rows, "text_col": "text", "vendor_col": "vendor", "worker_col": "worker"}
        )
        response.raise_for_status()
        location = response.headers["location"]
        while (status := client.get(location).json())["status"] not in ("succeeded", "failed"):
            time.sleep(0.5)
        wall = time.perf_counter() - started
        report_ok = client.get(f"{location}/report").status_code == 200
    return {
        "rows": len(rows),
        "status": status["status"],
        "seconds": wall,
        "rows/min": len(rows) / wall * 60,
        "report": report_ok,
    }


def markdown(results: list[dict], audit: dict | None, lengths: np.ndarray, cpu: str) -> str:
    lines = [
        f"Tier `{results[0]['tier']}` (model {results[0]['model']}); CPU: {cpu}.",
        "",
        "| texts per request | concurrency | requests | p50 latency (ms) | p95 latency (ms) | p99 latency (ms) "
        "| texts/s | errors |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['texts/request']} | {r['concurrency']} | {r['requests']} | {r['p50 ms']:.0f} | {r['p95 ms']:.0f} | "
            f"{r['p99 ms']:.0f} | {r['texts/s']:.1f} | {r['errors']} |"
        )
    if audit is not None:
        lines += [
            "",
            f"Audit of {audit['rows']} rows submitted as JSON, one worker: {audit['status']} in "
            f"{audit['seconds']:.0f} s = **{audit['rows/min']:.0f} rows/min** (report served: {audit['report']}).",
        ]
    lines += ["", f"Texts: median {np.median(lengths):.0f} characters (p90 {np.percentile(lengths, 90):.0f})."]
    return "\n".join(lines) + "\n"


def cpu_name() -> str:
    """The CPU's model name and how many cores this process may use."""
    try:
        info = Path("/proc/cpuinfo").read_text()
        name = next(line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name"))
    except (OSError, StopIteration):
        name = "unknown CPU"
    return f"{name}, {len(os.sched_getaffinity(0))} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tier", choices=("lm", "fast"), default="lm", help="the scoring tier to load")
    parser.add_argument("--requests", type=int, default=96, help="requests per one-text scenario")
    parser.add_argument("--batched-requests", type=int, default=8, help="requests per 32-text scenario")
    parser.add_argument("--audit-rows", type=int, default=1000, help="rows of the timed audit (0: no audit)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "api_load.md")
    args = parser.parse_args()

    corpus = load_corpus()
    pool = corpus[(corpus["split"] == "test") & corpus["text"].str.strip().str.len().ge(20)]
    pool = pool.drop_duplicates("text").sample(frac=1.0, random_state=args.seed)["text"].tolist()
    needed = 3 * args.requests + 3 * 32 * args.batched_requests + 16 + args.audit_rows
    if len(pool) < needed:
        raise SystemExit(f"only {len(pool)} distinct test texts; {needed} needed")

    tmp = Path(tempfile.mkdtemp(prefix="auditor-load-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDITOR_") or k == "AUDITOR_CACHE_DIR"}
    env.update(
        {
            "AUDITOR_DATABASE_URL": f"sqlite:///{tmp / 'auditor.db'}",
            "AUDITOR_REFERENCE_INDEX": str(tmp / "reference.sqlite"),
            # One key sends every request: its default limit (600 a minute) holds the default run's
            # 328 scoring requests, not a larger --requests; the benchmark measures the service, not the limit.
            "AUDITOR_RATE_LIMIT_PER_MINUTE": "0",
        }
    )
    key_command = [sys.executable, "-m", "auditor.cli", "keys", "create", "--tenant", "load"]
    key = (
        subprocess.run(key_command, env=env, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # No audit, no worker: an idle worker holds the LM in memory but takes no CPU from the web process.
    server = start_server(env, port, tmp / "server.log", workers=1 if args.audit_rows else 0)
    try:
        used = 0

        def take(n: int) -> list[str]:
            nonlocal used
            used += n
            return pool[used - n : used]

        asyncio.run(load(url, key, take(16), 1, 1, 16, args.tier))  # warm-up: compiled kernels, allocations
        results = []
        for per_request, concurrency in SCENARIOS:
            n = args.requests if per_request == 1 else args.batched_requests
            results.append(asyncio.run(load(url, key, take(n * per_request), per_request, concurrency, n, args.tier)))
            print(results[-1], flush=True)
        audit = audit_rate(url, key, take(args.audit_rows)) if args.audit_rows else None
        print(audit, flush=True)
        lengths = np.array([len(t) for t in pool[:used]])
    finally:
        server.terminate()
        try:
            server.wait(timeout=120)
        except subprocess.TimeoutExpired:
            server.kill()
    text = markdown(results, audit, lengths, cpu_name())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
