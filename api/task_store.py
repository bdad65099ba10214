"""Each tenant's task references in the service: a :class:`~auditor.tasks.store.TaskStore`
under :meth:`~api.settings.ServiceSettings.tenant_tasks_dir`.

The web process stores uploaded references unscored; the worker running the first audit
that uses a task scores them and stores the scores. Both write under the task's lock, so
an upload made while a worker scores is neither lost nor left half-scored.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from filelock import FileLock, Timeout

from api.problems import Problem
from auditor.tasks.store import ScoreFn, TaskError, TaskInfo, TaskReferences, TaskStore, check_name

# How long a request waits for a task that an audit is scoring before answering 409.
REQUEST_LOCK_SECONDS = 10.0


def add_hint(task: str) -> str:
    return f"POST /v1/tasks/{task}/references first"


def missing_task(task: str) -> Problem:
    return Problem(404, f"no task {task!r} for this tenant; {add_hint(task)}", task=task)


def valid_name(task: str) -> str:
    """``task``, or 422 when no task can have that name."""
    try:
        return check_name(task)
    except TaskError as exc:
        raise Problem(422, str(exc), task=task) from None


class TenantTasks(TaskStore):
    """One tenant's tasks: writes under each task's lock, and messages about the REST API
    rather than the command line."""

    @contextmanager
    def lock(self, task: str, timeout: float = -1) -> Iterator[None]:
        """Hold ``task``'s write lock (across processes sharing the directory); without it after
        ``timeout`` seconds, 409."""
        self.root.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.root / f".{check_name(task)}.lock"), timeout=timeout)
        try:
            lock.acquire()
        except Timeout:
            raise Problem(
                409,
                f"the references of task {task!r} are being scored by an audit that uses them; retry in a minute",
                retry_after=60,
            ) from None
        try:
            yield
        finally:
            lock.release()

    def require(self, task: str) -> TaskInfo:
        """The task, or 422 (a name no task can have) or 404 (no such task for this tenant)."""
        valid_name(task)
        try:
            return self.info(task)
        except TaskError:
            raise missing_task(task) from None

    def load(self, task: str, score: ScoreFn, identity: str) -> TaskReferences:
        """The task's scores for an audit: scored (and stored) under the lock if not yet scored
        by this model."""
        try:
            with self.lock(task):
                return super().load(task, score, identity)
        except TaskError as exc:
            if task not in self.names():
                raise TaskError(
                    f"no task {task!r} for this tenant (deleted after the audit was queued?); {add_hint(task)}"
                ) from None
            said = str(exc).replace(f"`auditor references add --task {task}`", f"POST /v1/tasks/{task}/references")
            raise TaskError(said) from None
