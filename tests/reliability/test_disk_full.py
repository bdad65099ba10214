"""The workers' disk (the cache folder with the jobs' work directories) full: a job that does not
fit fails with that reason and frees what it wrote, so the next job that fits succeeds without
anyone cleaning up. A 256 KiB tmpfs when this process may mount one (root), else a per-file size
limit on the worker process (RLIMIT_FSIZE)."""

from __future__ import annotations

import subprocess

import pytest
from faults import assert_finished_once_with_every_row, delivery, finished, submit, wait_until

pytestmark = pytest.mark.reliability


@pytest.fixture
def small_disk(deployment, tmp_path):
    """The environment of a worker whose cache folder (with the jobs' work directories) is a
    256 KiB filesystem, or whose files may not grow past 120 KiB where mounting is not allowed."""
    cache = tmp_path / "cache"
    cache.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(cache)], capture_output=True)
    if mounted.returncode == 0:
        yield {"AUDITOR_CACHE_DIR": str(cache)}
        deployment.stop_workers()
        subprocess.run(["umount", "-l", str(cache)], check=False)
    else:
        yield {"AUDITOR_CACHE_DIR": str(cache), "RELIABILITY_FSIZE_BYTES": str(120 * 1024)}


def test_a_full_disk_fails_the_job_with_the_reason_and_the_next_job_runs(deployment, small_disk, texts):
    key = deployment.new_key("disk")
    worker = deployment.start_worker(**small_disk)
    big = delivery(texts, 480, "big")  # ~180 KB: its copy fits, its scored chunks and items do not
    small = delivery(texts, 24, "small")
    with deployment.client(key) as client:
        failed = wait_until(client, submit(client, big), finished)
        assert failed["status"] == "failed", failed
        assert "disk is full" in failed["error"], failed["error"]
        assert not deployment.finishes(failed["id"])
        assert worker.poll() is None
        assert_finished_once_with_every_row(deployment, client, submit(client, small), small)
