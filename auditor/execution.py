"""Where work runs: this process, or a dask.distributed cluster. The audit and the gate take an
:class:`Executor` and run the same code on either (the service's job workers use it too).

- :class:`LocalExecutor`: tasks run in this process, when their result is asked for.
- :class:`DaskExecutor`: tasks run on the cluster's workers (models load once per worker).
- :func:`executor`: the one for ``--scheduler ADDRESS`` / ``--workers N``, else local.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol


class Pending(Protocol):
    def result(self) -> Any: ...


class Executor(Protocol):
    @property
    def local(self) -> bool: ...

    @property
    def slots(self) -> int:
        """Tasks worth keeping in flight."""
        ...

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Pending: ...

    def map_unordered(self, fn: Callable[..., Any], items: Sequence[Any], **kwargs: Any) -> Iterator[tuple[int, Any]]:
        """``(index, fn(item, **kwargs))`` for every item, as each finishes."""
        ...

    def describe(self) -> dict[str, Any]: ...


class _Deferred:
    """A task of the local executor: runs when its result is first asked for."""

    def __init__(self, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
        self._call: Callable[[], Any] | None = lambda: fn(*args, **kwargs)
        self._value: Any = None

    def result(self) -> Any:
        if self._call is not None:
            self._value, self._call = self._call(), None
        return self._value


class LocalExecutor:
    local = True
    slots = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Pending:
        return _Deferred(fn, args, kwargs)

    def map_unordered(self, fn: Callable[..., Any], items: Sequence[Any], **kwargs: Any) -> Iterator[tuple[int, Any]]:
        for i, item in enumerate(items):
            yield i, fn(item, **kwargs)

    def describe(self) -> dict[str, Any]:
        return {"mode": "local process"}

    def __str__(self) -> str:
        return "local process"


class DaskExecutor:
    local = False

    def __init__(self, client: Any) -> None:
        self.client = client

    @property
    def slots(self) -> int:
        return 2 * len(self.client.nthreads())

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Pending:
        future: Pending = self.client.submit(fn, *args, pure=False, **kwargs)
        return future

    def map_unordered(self, fn: Callable[..., Any], items: Sequence[Any], **kwargs: Any) -> Iterator[tuple[int, Any]]:
        from distributed import as_completed

        futures = self.client.map(fn, list(items), pure=False, **kwargs)
        position = {f.key: i for i, f in enumerate(futures)}
        for future in as_completed(futures):
            yield position[future.key], future.result()

    def describe(self) -> dict[str, Any]:
        return {
            "mode": "dask.distributed",
            "scheduler": self.client.scheduler.address,
            "workers": len(self.client.nthreads()),
        }

    def __str__(self) -> str:
        info = self.describe()
        return f"dask.distributed, {info['workers']} workers at {info['scheduler']}"


@contextmanager
def executor(scheduler: str | None = None, workers: int | None = None) -> Iterator[Executor]:
    """A :class:`DaskExecutor` for ``--scheduler ADDRESS`` or ``--workers N`` (a local cluster of
    single-threaded worker processes: the models are not thread-bound, but one process per core
    avoids the GIL); a :class:`LocalExecutor` when neither is asked for."""
    if scheduler and workers:
        raise ValueError("give --scheduler or --workers, not both")
    if not scheduler and not workers:
        yield LocalExecutor()
        return
    from distributed import Client, LocalCluster

    if scheduler:
        with Client(scheduler, timeout="30s") as client:
            yield DaskExecutor(client)
        return
    with (
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, host="127.0.0.1"
        ) as cluster,
        Client(cluster) as client,
    ):
        yield DaskExecutor(client)
