"""Submitting deliveries for audit, following their jobs, and fetching their reports."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from sqlalchemy import select

from api.db import AuditJob
from api.deps import SessionDep, SettingsDep, TenantDep
from api.jobs import COLUMN_ROLES, SUCCEEDED, job_status
from api.problems import Problem
from api.schemas import AuditRowsRequest, AuditStatus
from auditor.audit import AuditColumns, count_rows
from auditor.io import FORMATS, InputError, describe_format
from auditor.pipeline import plan

router = APIRouter(tags=["audits"])

_UPLOAD_BODY = {
    "requestBody": {
        "content": {
            "application/json": {"schema": AuditRowsRequest.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "text_col", "vendor_col"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "CSV, JSONL or Parquet (by file name), optionally .gz",
                        },
                        **{f"{role}_col": {"type": "string"} for role in COLUMN_ROLES},
                        "level": {"type": "number"},
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


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise Problem(413, f"the upload is {int(declared)} bytes; the limit is {limit} bytes", limit=limit)
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise Problem(413, f"the upload exceeds the limit of {limit} bytes", limit=limit)
    return bytes(body)


async def _parse_submission(request: Request, settings) -> tuple[str, bytes, dict]:
    """(stored file name, bytes, params) from a JSON body of rows or a multipart upload."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > settings.max_upload_bytes + 65536:
            raise Problem(
                413,
                f"the upload is {int(declared)} bytes; the limit is {settings.max_upload_bytes} bytes",
                limit=settings.max_upload_bytes,
            )
        form = await request.form(max_part_size=settings.max_upload_bytes)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise Problem(422, "multipart uploads need a 'file' part holding the delivery")
        data = await upload.read()
        if len(data) > settings.max_upload_bytes:
            raise Problem(
                413,
                f"the upload exceeds the limit of {settings.max_upload_bytes} bytes",
                limit=settings.max_upload_bytes,
            )
        try:
            fmt, compression = describe_format(upload.filename or "")
        except InputError:
            raise Problem(
                415,
                f"cannot tell the format of {upload.filename!r}: name the file *.csv, *.jsonl or *.parquet (optionally .gz)",
            ) from None
        name = "input" + "".join(Path(upload.filename).suffixes[-2 if compression else -1 :]).lower()
        fields = {k: v for k, v in form.items() if k != "file" and isinstance(v, str) and v != ""}
        try:
            level = float(fields.get("level", 0.9))
        except ValueError:
            raise Problem(422, f"level must be a number, not {fields['level']!r}") from None
        columns = {role: fields.get(f"{role}_col") for role in COLUMN_ROLES}
        return name, data, {"columns": columns, "level": level, "format": fmt}
    if content_type.startswith("application/json"):
        raw = await _read_limited(request, settings.max_upload_bytes)
        try:
            body = AuditRowsRequest.model_validate_json(raw)
        except ValueError as exc:
            raise Problem(422, f"the JSON body is not a valid audit request: {str(exc).splitlines()[0]}") from None
        if len(body.rows) > settings.max_rows_per_audit:
            raise Problem(
                413,
                f"{len(body.rows)} rows; the limit is {settings.max_rows_per_audit} rows per audit",
                limit=settings.max_rows_per_audit,
            )
        data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in body.rows).encode()
        columns = {role: getattr(body, f"{role}_col") for role in COLUMN_ROLES}
        return "input.jsonl", data, {"columns": columns, "level": body.level, "format": "jsonl"}
    raise Problem(
        415,
        f"send the delivery as application/json rows or as a multipart/form-data upload, not {content_type or 'no content type'}",
    )


@router.post("/audits", status_code=202, response_model=AuditStatus, openapi_extra=_UPLOAD_BODY)
async def submit_audit(
    request: Request, response: Response, session: SessionDep, tenant: TenantDep, settings: SettingsDep
) -> AuditStatus:
    """Queue a delivery for audit (same columns as `auditor audit`). Answers 202 with the job's Location."""
    name, data, params = await _parse_submission(request, settings)
    if not params["columns"].get("text") or not params["columns"].get("vendor"):
        raise Problem(422, "text_col and vendor_col are required")
    if not 0.5 < params["level"] < 1:
        raise Problem(422, f"level must be between 0.5 and 1, not {params['level']}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        try:
            _, unreadable, _ = plan([path], AuditColumns(**params["columns"]))
        except InputError as exc:
            raise Problem(422, str(exc).replace(str(path), "the upload")) from None
        if unreadable:
            raise Problem(422, next(iter(unreadable.values())).replace(str(path), "the upload"))
        rows = count_rows(path)
        if rows > settings.max_rows_per_audit:
            raise Problem(
                413,
                f"about {rows} rows; the limit is {settings.max_rows_per_audit} rows per audit",
                limit=settings.max_rows_per_audit,
            )
    job = AuditJob(tenant_id=tenant.id, params=params, input_name=name, input_data=data, rows_expected=rows)
    session.add(job)
    session.commit()
    response.headers["Location"] = f"/v1/audits/{job.id}"
    return AuditStatus(**job_status(job))


@router.get("/audits", response_model=list[AuditStatus])
def list_audits(session: SessionDep, tenant: TenantDep, limit: int = Query(50, ge=1, le=500)) -> list[AuditStatus]:
    jobs = session.scalars(
        select(AuditJob).where(AuditJob.tenant_id == tenant.id).order_by(AuditJob.created_at.desc()).limit(limit)
    )
    return [AuditStatus(**job_status(job)) for job in jobs]


@router.get(
    "/audits/{audit_id}", response_model=AuditStatus, responses={404: {"description": "no such audit for this key"}}
)
def get_audit(audit_id: str, session: SessionDep, tenant: TenantDep) -> AuditStatus:
    return AuditStatus(**job_status(_own_job(session, tenant, audit_id)))


@router.get(
    "/audits/{audit_id}/report", responses={404: {"description": "no such audit"}, 409: {"description": "not finished"}}
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
    return JSONResponse(json.loads(job.report_json))


__all__ = ["router", "FORMATS"]
