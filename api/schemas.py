"""Request and response bodies of the REST API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.tiers import TIER_DESCRIPTION, Tier
from auditor.auditing.options import AuditColumns, AuditSettings
from auditor.tasks.store import TaskInfo


class ValidationIssue(BaseModel):
    """One reason a request does not match the API (the ``errors`` of a 422 problem)."""

    location: str = Field(description="where: body.texts.0, query.limit, path.task ...")
    message: str
    type: str = Field(description="pydantic's error type: missing, string_type, json_invalid ...")


class Problem(BaseModel):
    """An error, as RFC 9457 problem details (``application/problem+json``): every 4xx and 5xx
    answer has this body. ``detail`` says what to change; the members after ``request_id`` are
    sent only by the errors they belong to."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "type": "about:blank",
                    "title": "Content Too Large",
                    "status": 413,
                    "detail": "65 texts in one request; the limit is 64. Send larger sets as an audit (POST /v1/audits)",
                    "instance": "/v1/score",
                    "request_id": "9f1c2e7a4b5d4e3f8a6b0c1d2e3f4a5b",
                    "limit": 64,
                }
            ]
        },
    )

    type: str = Field("about:blank", description="always about:blank: the status and title say it all")
    title: str = Field(description="the HTTP status phrase")
    status: int = Field(description="the HTTP status code")
    detail: str = Field(description="what went wrong and what to do about it, for a person")
    instance: str | None = Field(None, description="the path of the request")
    request_id: str | None = Field(None, description="the request's X-Request-ID, as in the server's log")
    errors: list[ValidationIssue] | None = Field(None, description="422 for a request that does not match the API")
    limit: int | None = Field(None, description="413: the limit exceeded (texts, rows or bytes)")
    retry_after: float | None = Field(None, description="503 and 409: seconds to wait before retrying (as Retry-After)")
    status_of_audit: str | None = Field(None, description="409 for a report: the audit's status")
    task: str | None = Field(None, description="the task the error is about")
    role: str | None = Field(None, description="the reference role the error is about: human or machine")
    part: str | None = Field(None, description="the multipart part or JSON list the error is about")
    file: str | None = Field(None, description="the uploaded file the error is about")
    column: str | None = Field(None, description="the column the error is about")
    checks: dict[str, bool] | None = Field(None, description="/readyz: which readiness checks pass")
    models: str | None = Field(None, description="/readyz: loading, loaded or failed")
    tiers: dict[str, str] | None = Field(
        None, description="/readyz: each scoring tier's model (lm, fast): not loaded, loading, loaded or failed"
    )


class ScoreRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "texts": [
                        "Certainly! Here is a concise summary of the article's main points.",
                        "we went to the lake on sunday, water was freezing lol",
                        None,
                    ],
                    "tier": "lm",
                }
            ]
        }
    )

    texts: list[str | None] = Field(
        description="texts to score, in order; null or empty texts are answered with a skip_reason"
    )
    tier: Tier = Field("lm", description=TIER_DESCRIPTION)


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
    tier: Tier = Field(description="the tier that scored the texts (as requested)")
    model: str = Field(description="the scoring model's id: classifier-v3 (lm), ngram-classifier-v1 (fast) ...")
    model_version: str = Field(description="the scoring model's version (the detector's, as in its id)")
    model_created_at: str | None = Field(
        None, description="when the model's weights were trained (its manifest), telling retrained models apart"
    )
    threshold: float = Field(description="the tier's calibrated threshold: flagged when llm_probability > threshold")


def _column(role: str) -> Any:
    """The ``{role}_col`` field: the description and rules of :class:`AuditColumns`' ``role``."""
    field = AuditColumns.model_fields[role]
    return Field(field.get_default(), min_length=1, description=field.description)


class AuditRowsRequest(AuditSettings):
    """A delivery as JSON rows, with the options of `auditor audit` (columns of every role,
    references as lists of texts, a stored task, the interval level, the tolerance, the flagged
    items shown). The options' types, bounds, defaults and descriptions are
    :class:`~auditor.auditing.options.AuditSettings`' (inherited): the command line's and the Python
    API's."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "rows": [
                        {
                            "answer": "Certainly! The capital of France is Paris.",
                            "vendor": "acme-labels",
                            "worker": "w1",
                        },
                        {"answer": "paris, obviously", "vendor": "acme-labels", "worker": "w2"},
                    ],
                    "text_col": "answer",
                    "vendor_col": "vendor",
                    "worker_col": "worker",
                    "level": 0.9,
                    "tolerance": 0.1,
                }
            ]
        }
    )

    rows: list[dict[str, Any]] = Field(description="the delivery, one object per row")
    text_col: str = _column("text")
    vendor_col: str = _column("vendor")
    worker_col: str | None = _column("worker")
    id_col: str | None = _column("id")
    batch_col: str | None = _column("batch")
    time_col: str | None = _column("time")
    paste_col: str | None = _column("paste")
    keystrokes_col: str | None = _column("keystrokes")
    human_reference: list[str] | None = Field(
        None, description="human-written texts of the same task: false positives re-measured on them"
    )
    machine_reference: list[str] | None = Field(
        None, description="LLM-written texts of the same task: true positives re-measured on them"
    )


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


class TaskReferencesRequest(BaseModel):
    """A task's reference texts as JSON: each list holds texts, or objects with the text under ``text_col``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "human": ["Paris is the capital of France.", {"text": "It rained all day, so we stayed in."}],
                    "machine": [
                        "Certainly! The capital of France is Paris.",
                        "As an AI language model, I would describe the weather as rainy.",
                    ],
                    "text_col": "text",
                    "replace": False,
                }
            ]
        }
    )

    human: list[str | dict[str, Any]] | None = Field(None, description="human-written texts of the task")
    machine: list[str | dict[str, Any]] | None = Field(None, description="LLM-written texts of the task")
    text_col: str = Field("text", min_length=1, description="the field holding the text in object items")
    replace: bool = Field(False, description="drop the role's stored texts first (default: add to them)")


_SUMMARY_EXAMPLE: dict[str, Any] = {
    "task": "medical-qa",
    "human": 120,
    "machine": 80,
    "generator": None,
    "created_at": "2025-01-31T09:30:00+00:00",
}


class TaskSummary(BaseModel):
    """One task and how many references of each role it holds."""

    model_config = ConfigDict(json_schema_extra={"examples": [_SUMMARY_EXAMPLE]})

    task: str
    human: int = Field(description="human-written reference texts stored")
    machine: int = Field(description="LLM-written reference texts stored")
    generator: str | None = Field(None, description="the model that wrote the LLM references, if generated")
    created_at: str


class RoleCounts(BaseModel):
    human: int = 0
    machine: int = 0


class TaskReferencesAdded(TaskSummary):
    """The task after an upload, and what the upload stored."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [_SUMMARY_EXAMPLE | {"stored": {"human": 120, "machine": 0}}]}
    )

    stored: RoleCounts = Field(
        description="texts this request stored per role (a text already stored, or repeated, is kept once); they "
        "are scored by the first audit that uses the task"
    )


class TaskDetail(TaskInfo):
    """Everything stored about a task: per role, how many texts, where they came from and which
    model scored them (``unscored`` until an audit first uses them)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "medical-qa",
                    "created_at": "2025-01-31T09:30:00+00:00",
                    "human": {
                        "n_texts": 120,
                        "origins": ["upload human.csv"],
                        "generator": None,
                        "scored_with": "3f9a1c0d2b7e4a55",
                        "updated_at": "2025-01-31T09:41:12+00:00",
                    },
                    "machine": {
                        "n_texts": 80,
                        "origins": ["JSON request"],
                        "generator": None,
                        "scored_with": "unscored",
                        "updated_at": "2025-01-31T09:31:40+00:00",
                    },
                }
            ]
        }
    )
