"""The REST service's settings: the auditor's (:class:`auditor.config.Settings`) plus the
database, the job queue, the request limits and where audit jobs run."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field

from auditor.config import Settings


class ServiceSettings(Settings):
    database_url: str | None = Field(None, description="SQLAlchemy URL; default: SQLite in the cache directory")
    redis_url: str | None = Field(None, description="Redis for the shared reference index (PostgreSQL deployments)")
    max_texts_per_request: int = Field(64, ge=1, description="texts per synchronous /v1/score request")
    max_upload_bytes: int = Field(50 * 1024 * 1024, ge=1024, description="size of one uploaded delivery")
    max_rows_per_audit: int = Field(1_000_000, ge=1, description="rows in one submitted audit")
    max_decompressed_bytes: int = Field(
        1024 * 1024 * 1024,
        ge=1024,
        description="total decompressed size of one request's .gz/.zst/.bz2/.xz files (counted while streaming)",
    )
    rate_limit_per_minute: int = Field(
        600, ge=0, description="requests per API key in any 60 s on /v1 (then 429 with Retry-After); 0: no limit"
    )
    score_batch_wait_ms: float = Field(4.0, ge=0, description="how long /v1/score waits to batch concurrent requests")
    job_heartbeat_seconds: float = Field(5.0, gt=0)
    job_stale_seconds: float = Field(60.0, gt=0, description="a running job without heartbeat this long is taken over")
    job_max_attempts: int = Field(3, ge=1)
    dask_scheduler: str | None = Field(
        None, description="run the scoring of audit jobs on this dask.distributed scheduler (tcp://host:port)"
    )

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.cache_dir / 'auditor.db'}"

    def tenant_reference_location(self, tenant: str) -> str:
        """Each tenant has its own reference index: in Redis when configured, else a local file."""
        if self.redis_url:
            return f"{self.redis_url}#tenant-{tenant}"
        return str(self.cache_dir / "reference" / f"tenant-{tenant}.sqlite")

    def tenant_tasks_dir(self, tenant: str) -> Path:
        """Each tenant's task references (a :class:`~auditor.tasks.store.TaskStore`), apart from
        other tenants' and from the command line's: ``<cache_dir>/tasks/tenant-<id>`` (under
        ``AUDITOR_TASKS_DIR`` instead of ``<cache_dir>/tasks`` when that is set)."""
        return self.task_store_dir / f"tenant-{tenant}"


@lru_cache
def get_service_settings() -> ServiceSettings:
    return ServiceSettings()
