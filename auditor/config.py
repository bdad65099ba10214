"""One settings object for the whole service, read from ``AUDITOR_*`` environment variables
(or a ``.env`` file), with embedded defaults that work offline on a laptop."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from detectors.store import EMBEDDED_LM, default_cache_dir


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AUDITOR_", env_file=".env", extra="ignore")

    cache_dir: Path = Field(default_factory=default_cache_dir, description="models, indexes and the embedded database")
    model_dir: Path | None = Field(None, description="trained detector bundle; default: the one shipped in the package")
    lm: str = Field(
        EMBEDDED_LM, description="causal LM for perplexity signals: local path, hub id or the embedded name"
    )
    max_tokens: int = Field(256, ge=8, description="tokens scored per text; longer texts are truncated")
    batch_tokens: int = Field(8192, ge=256, description="padded tokens per LM batch")
    device: str = "auto"
    dtype: str = "auto"
    reference_index: str | None = Field(
        None, description="near-duplicate reference index: file path or redis://host:port/db#name"
    )
    dedup_threshold: float = Field(0.4, gt=0, le=1, description="Jaccard similarity that counts as a near-duplicate")
    chunk_rows: int = Field(512, ge=1, description="rows scored per step (progress and resume granularity)")

    # REST service
    database_url: str | None = Field(None, description="SQLAlchemy URL; default: SQLite in the cache directory")
    redis_url: str | None = Field(None, description="Redis for the shared reference index (PostgreSQL deployments)")
    max_texts_per_request: int = Field(64, ge=1, description="texts per synchronous /v1/score request")
    max_upload_bytes: int = Field(50 * 1024 * 1024, ge=1024, description="size of one uploaded delivery")
    max_rows_per_audit: int = Field(1_000_000, ge=1, description="rows in one submitted audit")
    score_batch_wait_ms: float = Field(4.0, ge=0, description="how long /v1/score waits to batch concurrent requests")
    job_heartbeat_seconds: float = Field(5.0, gt=0)
    job_stale_seconds: float = Field(60.0, gt=0, description="a running job without heartbeat this long is taken over")
    job_max_attempts: int = Field(3, ge=1)

    @field_validator("cache_dir", mode="after")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @property
    def reference_location(self) -> str:
        return self.reference_index or str(self.cache_dir / "reference-index.sqlite")

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.cache_dir / 'auditor.db'}"

    def tenant_reference_location(self, tenant: str) -> str:
        """Each tenant has its own reference index: in Redis when configured, else a local file."""
        if self.redis_url:
            return f"{self.redis_url}#tenant-{tenant}"
        return str(self.cache_dir / "reference" / f"tenant-{tenant}.sqlite")


@lru_cache
def get_settings() -> Settings:
    return Settings()
