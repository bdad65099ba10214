"""Scale-out on dask.distributed: connect to a scheduler, or start a local cluster of processes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None) -> Iterator[Any]:
    """A ``distributed.Client`` for ``--scheduler ADDRESS`` or ``--workers N`` (a local cluster of
    single-threaded worker processes: the models are not thread-bound, but one process per core
    avoids the GIL); ``None`` when neither is asked for, meaning "run in this process"."""
    if not scheduler and not workers:
        yield None
        return
    from distributed import Client, LocalCluster

    if scheduler:
        with Client(scheduler, timeout="30s") as client:
            yield client
        return
    with (
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, host="127.0.0.1"
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client
