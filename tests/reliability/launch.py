"""Launcher of the service's real processes for the fault tests, in their fast configuration.

``python launch.py web PORT``: ``auditor serve``'s app under uvicorn, its ``lm`` tier served by
the n-gram model (no causal LM), so the process is ready in seconds.
``python launch.py worker``: ``auditor worker``'s loop with the n-gram scorer. Besides:

- ``RELIABILITY_CHUNK_SECONDS``: each scored chunk takes at least this long, so that a fault
  can be injected while a job runs (a kill lands mid-chunk);
- ``RELIABILITY_EVIDENCE``: a folder where every finish this worker records is kept as
  ``<job>.<pid>.<n>.parquet``, a copy of the job's ``items.parquet`` (the service deletes the
  job's work directory after it), so that a test can count finishes and compare the rows;
- ``RELIABILITY_FSIZE_BYTES``: no file written by the worker may grow beyond this (RLIMIT_FSIZE;
  the disk-full stand-in where no small filesystem can be mounted).
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path


def web(port: int) -> None:
    import uvicorn

    import api.main
    import api.tiers

    api.main._load_scorer = api.tiers.load_fast_scorer  # type: ignore[assignment]
    logging.basicConfig(level=logging.INFO)
    uvicorn.run(api.main.create_app(), host="127.0.0.1", port=port, log_level="info", timeout_graceful_shutdown=10)


def worker() -> None:
    import api.jobs
    from api.db import migrate
    from api.settings import get_service_settings
    from auditor.scoring import Scorer

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    pause = float(os.environ.get("RELIABILITY_CHUNK_SECONDS", "0"))
    if pause:
        detect = Scorer._detect_uncached

        def slow(self, texts):
            time.sleep(pause)
            return detect(self, texts)

        Scorer._detect_uncached = slow  # type: ignore[method-assign]
    evidence = os.environ.get("RELIABILITY_EVIDENCE")
    if evidence:
        finish, counter = api.jobs._finish, itertools.count()

        def kept(factory, job, report, rows_done, *args, **kwargs):
            items = api.jobs.jobs_dir(settings) / job.id / "out" / "items.parquet"
            copy = Path(evidence) / f".{job.id}.{os.getpid()}.partial"
            shutil.copyfile(items, copy)
            recorded = finish(factory, job, report, rows_done, *args, **kwargs)
            if recorded is not False:  # None from a _finish that does not say
                copy.rename(Path(evidence) / f"{job.id}.{os.getpid()}.{next(counter)}.parquet")
            return recorded

        api.jobs._finish = kept  # type: ignore[assignment]
    limit = os.environ.get("RELIABILITY_FSIZE_BYTES")
    if limit:
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (int(limit), int(limit)))
    settings = get_service_settings()
    migrate(settings.database)
    scorer = Scorer(settings, reference=False, kind="fast").setup()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("worker ready", flush=True)
    api.jobs.worker_loop(settings, scorer, poll_seconds=0.2, stop=stop)


if __name__ == "__main__":
    if sys.argv[1] == "web":
        web(int(sys.argv[2]))
    else:
        worker()
