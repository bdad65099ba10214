"""Request and response bodies of the REST API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class ScoreRequest(BaseModel):
    texts: list[str | None] = Field(
        description="texts to score, in order; null or empty texts are answered with a skip_reason"
    )


class ScoreResult(BaseModel):
    llm_probability: float | None = Field(
        description="calibrated probability that the text was written by an LLM; null if skipped"
    )
    flagged: bool = Field(description="above the calibrated threshold, or a near-copy of known LLM output")
    flag_reason: str | None = None
    skip_reason: str | None = None
    signals: dict[str, Any] = Field(default_factory=dict)


class ScoreResponse(BaseModel):
    results: list[ScoreResult]
    model: str
    threshold: float


class AuditRowsRequest(BaseModel):
    rows: list[dict[str, Any]] = Field(description="the delivery, one object per row")
    text_col: str
    vendor_col: str
    worker_col: str | None = None
    id_col: str | None = None
    batch_col: str | None = None
    time_col: str | None = None
    paste_col: str | None = None
    keystrokes_col: str | None = None
    human_reference: list[str] | None = Field(
        None, description="human-written texts of the same task: false positives re-measured on them"
    )
    machine_reference: list[str] | None = Field(
        None, description="LLM-written texts of the same task: true positives re-measured on them"
    )
    level: float = Field(0.9, gt=0.5, lt=1.0, description="interval coverage")


class AuditStatus(BaseModel):
    id: str
    status: Literal["queued", "running", "succeeded", "failed"]
    created_at: str
    started_at: str | None
    finished_at: str | None
    attempts: int
    rows_done: int
    rows_expected: int
    progress: float | None
    error: str | None
    params: dict[str, Any]


class VendorPoint(BaseModel):
    audit_id: str
    created_at: str
    n_scored: int
    n_flagged: int
    flag_rate: float
    prevalence: float
    ci_low: float
    ci_high: float


class VendorSummary(BaseModel):
    vendor: str
    audits: int
    latest: VendorPoint


class VendorHistory(BaseModel):
    vendor: str
    history: list[VendorPoint]


class ReferenceText(BaseModel):
    text: str = Field(min_length=1)
    id: str | None = Field(None, description="stable id; default: a hash of the text")
    label: str = Field("machine", description="machine (known LLM output), human, eval, ...")
    source: str = ""


class ReferenceRequest(BaseModel):
    texts: list[ReferenceText]


class ReferenceResponse(BaseModel):
    added: int
    already_present: int
    entries: int
