"""The auditor's settings, read from ``AUDITOR_*`` environment variables (or a ``.env`` file),
with embedded defaults that work offline on a laptop. The REST service's own settings
(database, queue, limits) extend these in :mod:`api.settings`."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

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
    quantize: str = Field(
        "auto", description="int8 linear layers for the LM: auto (on CPUs without native bf16), int8 or none"
    )
    reference_index: str | None = Field(
        None, description="near-duplicate reference index: file path or redis://host:port/db#name"
    )
    dedup_threshold: float = Field(0.4, gt=0, le=1, description="Jaccard similarity that counts as a near-duplicate")
    chunk_rows: int = Field(512, ge=1, description="rows scored per step (progress and resume granularity)")
    tasks_dir: Path | None = Field(None, description="stored task references; default: <cache_dir>/tasks")
    detectors: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="more registered detectors (names, comma-separated) run next to the scoring model: "
        "their declared outputs become columns of the scored items",
    )

    @field_validator("detectors", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return value

    @field_validator("cache_dir", mode="after")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @property
    def task_store_dir(self) -> Path:
        return self.tasks_dir or self.cache_dir / "tasks"

    @property
    def reference_location(self) -> str:
        return self.reference_index or str(self.cache_dir / "reference-index.sqlite")


@lru_cache
def get_settings() -> Settings:
    return Settings()
