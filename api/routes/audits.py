"""Submitting deliveries for audit, following their jobs, and fetching their reports."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from api.db import AuditFile, AuditJob
from api.deps import SessionDep, SettingsDep, TasksDep, TenantDep
from api.idempotency import REPLAYED_HEADER, IdempotencyKeyHeader, earlier, fingerprint, remember
from api.jobs import REFERENCE_ROLES, SUCCEEDED, job_status
from api.problems import Problem, problem_responses
from api.schemas import AuditRowsRequest, AuditStatus
from api.settings import ServiceSettings
from api.task_store import valid_name
from api.uploads import check_decompressed, check_multipart_size, exceeds, read_limited, stored_name
from auditor.auditing import COLUMN_ROLES, AuditOptions, plan
from auditor.auditing.options import AuditSettings, options_from
from auditor.reader import ReadError, count_records, describe_format, require_columns

router = APIRouter(tags=["audits"])

_UPLOAD_BODY = {
    "requestBody": {
        "content": {
            "application/json": {
                "schema": AuditRowsRequest.model_json_schema(),
                "examples": {
                    "rows": {
                        "summary": "a delivery as JSON rows",
                        "value": {
                            "rows": [
                                {
                                    "answer": "Certainly! The capital of France is Paris.",
                                    "vendor": "acme",
                                    "worker": "w1",
                                },
                                {"answer": "paris, obviously", "vendor": "acme", "worker": "w2"},
                            ],
                            "text_col": "answer",
                            "vendor_col": "vendor",
                            "worker_col": "worker",
                        },
                    },
                    "task": {
                        "summary": "with the task references stored for this key and a 95% interval",
                        "value": {
                            "rows": [{"answer": "It rained all day, so we stayed in.", "vendor": "acme"}],
                            "text_col": "answer",
                            "vendor_col": "vendor",
                            "task": "medical-qa",
                            "level": 0.95,
                            "tolerance": 0.1,
                        },
                    },
                    "references": {
                        "summary": "with human and LLM-written references of the same task, as lists of texts",
                        "value": {
                            "rows": [{"answer": "It rained all day, so we stayed in.", "vendor": "acme"}],
                            "text_col": "answer",
                            "vendor_col": "vendor",
                            "human_reference": ["Paris is the capital of France.", "We stayed in; it rained."],
                            "machine_reference": ["Certainly! The capital of France is Paris."],
                        },
                    },
                },
            },
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "text_col", "vendor_col"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "the delivery: CSV, TSV, JSON, JSONL or Parquet (by file name), optionally .gz/.zst",
                        },
                        **{
                            role: {
                                "type": "string",
                                "format": "binary",
                                "description": f"--{role.replace('_', '-')} file",
                            }
                            for role in REFERENCE_ROLES
                        },
                        **{f"{role}_col": {"type": "string"} for role in COLUMN_ROLES},
                        "reference_text_col": {"type": "string"},
                        # the options' types, bounds and descriptions: the JSON body's (AuditSettings')
                        **AuditSettings.model_json_schema()["properties"],
                    },
                }
            },
        },
        "required": True,
    }
}


def _own_job(session, tenant, audit_id: str) -> AuditJob:
    job = session.get(AuditJob, audit_id)
    if job is None or job.tenant_id != tenant.id:  # another tenant's job is "not found", not "forbidden"
        raise Problem(404, f"no audit {audit_id!r}")
    return job


@dataclass
class Submission:
    """An audit request as parsed: the delivery, the reference files and the options."""

    name: str
    data: bytes
    options: AuditOptions
    format: str
    references: dict[str, tuple[str, bytes]] = field(default_factory=dict)

    def fingerprint(self) -> str:
        """The same for the same delivery, references and options, however they were sent."""
        head = {
            "name": self.name,
            "format": self.format,
            "options": self.options.model_dump(mode="json"),
            "references": {role: name for role, (name, _) in sorted(self.references.items())},
        }
        return fingerprint(head, self.data, *(data for _, (_, data) in sorted(self.references.items())))


# The options a submission sets: its columns, AuditSettings' options and the references' text
# column (never the references' paths, nor resume: those are the service's).
_OPTION_FIELDS = frozenset(
    {*(f"{role}_col" for role in COLUMN_ROLES), *AuditSettings.model_fields, "reference_text_col"}
)


def _options(fields: dict[str, Any]) -> AuditOptions:
    """The submission's options, validated through :class:`AuditOptions` as the command line's and
    the Python API's are; 422 naming the field (``level``, ``text_col`` ...) otherwise."""
    fields = {name: value for name, value in fields.items() if name in _OPTION_FIELDS}
    if not fields.get("text_col") or not fields.get("vendor_col"):
        raise Problem(422, "text_col and vendor_col are required")
    if fields.get("task") is not None:
        valid_name(fields["task"])  # 422 with the task named, as the task routes answer
    try:
        return options_from(fields)
    except ValidationError as exc:
        said = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']} (got {e['input']!r})" for e in exc.errors()[:3])
        raise Problem(422, f"the audit options cannot be used: {said}") from None


async def _multipart(request: Request, settings: ServiceSettings) -> Submission:
    check_multipart_size(request, settings.max_upload_bytes)
    form = await request.form(max_part_size=settings.max_upload_bytes)
    files: dict[str, tuple[str, bytes]] = {}
    for role in ("file", *REFERENCE_ROLES):
        upload = form.get(role)
        if upload is None or isinstance(upload, str):
            continue
        data = await upload.read()
        files[role] = (stored_name(upload.filename or "", "the delivery" if role == "file" else role), data)
    if "file" not in files:
        raise Problem(422, "multipart uploads need a 'file' part holding the delivery")
    if sum(len(data) for _, data in files.values()) > settings.max_upload_bytes:
        raise exceeds(settings.max_upload_bytes)
    await run_in_threadpool(check_decompressed, list(files.values()), settings.max_decompressed_bytes)
    fields = {k: v for k, v in form.items() if isinstance(v, str) and v != ""}
    name, data = files.pop("file")
    return Submission(name, data, _options(fields), describe_format(name)[0], files)


def _jsonl(rows: list) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()


async def _json_rows(request: Request, settings: ServiceSettings) -> Submission:
    raw = await read_limited(request, settings.max_upload_bytes)
    try:
        body = AuditRowsRequest.model_validate_json(raw)
    except ValidationError as exc:
        said = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()[:3])
        raise Problem(422, f"the JSON body is not a valid audit request: {said}") from None
    if len(body.rows) > settings.max_rows_per_audit:
        raise Problem(
            413,
            f"{len(body.rows)} rows; the limit is {settings.max_rows_per_audit} rows per audit",
            limit=settings.max_rows_per_audit,
        )
    references = {
        role: (f"{role}.jsonl", _jsonl([{"text": t} for t in texts]))
        for role in REFERENCE_ROLES
        if (texts := getattr(body, role)) is not None
    }
    fields = {f"{role}_col": getattr(body, f"{role}_col") for role in COLUMN_ROLES}
    fields |= {name: getattr(body, name) for name in AuditSettings.model_fields}
    return Submission("rows.jsonl", _jsonl(body.rows), _options(fields), "jsonl", references)


async def _parse_submission(request: Request, settings: ServiceSettings) -> Submission:
    """A JSON body of rows (references as lists of texts) or a multipart upload (references as files)."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        return await _multipart(request, settings)
    if content_type.startswith("application/json"):
        return await _json_rows(request, settings)
    raise Problem(
        415,
        f"send the delivery as application/json rows or as a multipart/form-data upload, not {content_type or 'no content type'}",
    )


def _check(submission: Submission, settings: ServiceSettings) -> int:
    """Validate the delivery's columns and the references before anything is queued; the rows expected."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / submission.name
        path.write_bytes(submission.data)
        try:
            _, unreadable, _ = plan([path], submission.options.columns)
        except ReadError as exc:
            raise Problem(422, str(exc).replace(str(path), "the upload")) from None
        if unreadable:
            raise Problem(422, next(iter(unreadable.values())).replace(str(path), "the upload"))
        rows = count_records(path)
        if rows > settings.max_rows_per_audit:
            raise Problem(
                413,
                f"about {rows} rows; the limit is {settings.max_rows_per_audit} rows per audit",
                limit=settings.max_rows_per_audit,
            )
        for role, (name, data) in submission.references.items():
            reference = Path(tmp) / role / name
            reference.parent.mkdir()
            reference.write_bytes(data)
            try:
                require_columns(reference, {"reference_text_col": submission.options.reference_text_col})
            except ReadError as exc:
                raise Problem(422, f"{role}: " + str(exc).replace(str(reference), name)) from None
    return rows


@router.post(
    "/audits",
    operation_id="createAudit",
    status_code=202,
    response_model=AuditStatus,
    openapi_extra=_UPLOAD_BODY,
    responses={
        200: {
            "description": "a retry: the job the first request with this Idempotency-Key created (its status now), "
            f"with its Location and `{REPLAYED_HEADER}: true`",
            "model": AuditStatus,
        },
        **problem_responses(
            400,
            (404, "no such task for this key"),
            (409, "the Idempotency-Key was first sent with another request"),
            (413, "the upload, its decompressed size or the number of rows is over the limit (`limit`)"),
            (415, "neither JSON nor multipart, or a file of unknown format"),
            (
                422,
                "the options or the delivery cannot be used: unknown columns, unreadable file, bad level or tolerance ...",
            ),
        ),
    },
)
async def submit_audit(
    request: Request,
    response: Response,
    session: SessionDep,
    tenant: TenantDep,
    settings: SettingsDep,
    tasks: TasksDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> AuditStatus:
    """Queue a delivery for audit with every option of `auditor audit` (columns of every role,
    human/machine references, stored task references, interval level, tolerance). Answers 202 with the
    job's Location; 404 when the task is not one of this tenant's. With an `Idempotency-Key`, a retry
    of the same request answers 200 with the job the first one created (no second job)."""
    submission = await _parse_submission(request, settings)
    request_hash = submission.fingerprint() if idempotency_key else ""
    if idempotency_key and (job_id := earlier(session, tenant.id, _SUBMIT, idempotency_key, request_hash)):
        return _replay(session, response, job_id)
    if submission.options.task:
        tasks.require(submission.options.task)
    rows = _check(submission, settings)
    params = {"options": submission.options.model_dump(), "format": submission.format}
    job = AuditJob(
        tenant_id=tenant.id, params=params, input_name=submission.name, input_data=submission.data, rows_expected=rows
    )
    session.add(job)
    session.flush()
    for role, (name, data) in submission.references.items():
        session.add(AuditFile(job_id=job.id, role=role, name=name, data=data))
    if idempotency_key:
        remember(session, tenant.id, _SUBMIT, idempotency_key, request_hash, job.id)
    try:
        session.commit()
    except IntegrityError:  # the same key, committed meanwhile by a concurrent request: answer as its retry
        session.rollback()
        if not idempotency_key or not (job_id := earlier(session, tenant.id, _SUBMIT, idempotency_key, request_hash)):
            raise
        return _replay(session, response, job_id)
    response.headers["Location"] = f"/v1/audits/{job.id}"
    return AuditStatus(**job_status(job))


_SUBMIT = "createAudit"  # the operation idempotency keys of submissions belong to


def _replay(session, response: Response, job_id: str) -> AuditStatus:
    job = session.get(AuditJob, job_id)
    assert job is not None  # jobs are never deleted
    response.status_code = 200
    response.headers["Location"] = f"/v1/audits/{job.id}"
    response.headers[REPLAYED_HEADER] = "true"
    return AuditStatus(**job_status(job))


@router.get("/audits", operation_id="listAudits", response_model=list[AuditStatus], responses=problem_responses(422))
def list_audits(session: SessionDep, tenant: TenantDep, limit: int = Query(50, ge=1, le=500)) -> list[AuditStatus]:
    jobs = session.scalars(
        select(AuditJob).where(AuditJob.tenant_id == tenant.id).order_by(AuditJob.created_at.desc()).limit(limit)
    )
    return [AuditStatus(**job_status(job)) for job in jobs]


@router.get(
    "/audits/{audit_id}",
    operation_id="getAudit",
    response_model=AuditStatus,
    responses=problem_responses((404, "no such audit for this key"), 422),
)
def get_audit(audit_id: str, session: SessionDep, tenant: TenantDep) -> AuditStatus:
    return AuditStatus(**job_status(_own_job(session, tenant, audit_id)))


@router.get(
    "/audits/{audit_id}/report",
    operation_id="getAuditReport",
    responses={
        200: {
            "description": "the report, as `format` asks",
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "text/html": {"schema": {"type": "string"}},
                "text/markdown": {"schema": {"type": "string"}},
            },
        },
        **problem_responses(
            (404, "no such audit for this key"),
            (409, "the audit has not succeeded (yet): `status_of_audit`"),
            422,
        ),
    },
)
def get_report(
    audit_id: str, session: SessionDep, tenant: TenantDep, format: Literal["json", "html", "md"] = "json"
) -> Response:
    """The same report the CLI writes: report.json, report.html or report.md."""
    job = _own_job(session, tenant, audit_id)
    if job.status != SUCCEEDED:
        detail = f"the audit has status {job.status!r}" + (
            f": {job.error}" if job.error else "; fetch the report when it has succeeded"
        )
        raise Problem(409, detail, status_of_audit=job.status)
    if format == "html":
        return HTMLResponse(job.report_html)
    if format == "md":
        return PlainTextResponse(job.report_md, media_type="text/markdown; charset=utf-8")
    return JSONResponse(json.loads(job.report_json or "{}"))


__all__ = ["router"]
