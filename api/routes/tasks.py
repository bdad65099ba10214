"""A tenant's task references: human and LLM-written texts of one task, which re-measure the
detector's error rates on the task's own kind of text in audits submitted with ``task``
(the service's ``auditor references add/list/show/remove``).

Uploads are stored unscored; the worker running the first audit that uses a task scores its
references and keeps the scores, so later audits do not score them again.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.deps import SessionDep, SettingsDep, TasksDep, TenantDep
from api.idempotency import REPLAYED_HEADER, IdempotencyKeyHeader, earlier_row, fingerprint, remember
from api.problems import Problem, problem_responses
from api.schemas import RoleCounts, TaskDetail, TaskReferencesAdded, TaskReferencesRequest, TaskSummary
from api.settings import ServiceSettings
from api.task_store import REQUEST_LOCK_SECONDS, TenantTasks, missing_task, valid_name
from api.uploads import check_decompressed, check_multipart_size, exceeds, read_limited, stored_name
from auditor.reader import ReadError, read_texts, require_columns
from auditor.tasks.store import FEW_TEXTS, MIN_TEXTS, ROLES, TaskError, TaskInfo

router = APIRouter(tags=["tasks"])

_NOT_FOUND = (404, "no such task for this key")
_SCORING = (409, "an audit is scoring this task's references (retry after `retry_after` seconds)")
_FILE_PART = "{role} texts of the task: CSV, TSV, JSON, JSONL or Parquet (by file name), optionally .gz/.zst; repeat the part for several files"
_REFERENCES_BODY = {
    "requestBody": {
        "content": {
            "application/json": {
                "schema": TaskReferencesRequest.model_json_schema(),
                "examples": {
                    "texts": {
                        "summary": "human and LLM-written texts, as strings or objects",
                        "value": {
                            "human": [
                                "Paris is the capital of France.",
                                {"text": "It rained all day, so we stayed in."},
                            ],
                            "machine": [
                                "Certainly! The capital of France is Paris.",
                                "As an AI language model, I would describe the weather as rainy.",
                            ],
                        },
                    },
                    "replace": {
                        "summary": "replace the stored human texts, read from another field of the objects",
                        "value": {
                            "human": [{"answer": "We stayed in; it rained."}, {"answer": "Paris, of course."}],
                            "text_col": "answer",
                            "replace": True,
                        },
                    },
                },
            },
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "human": {
                            "type": "string",
                            "format": "binary",
                            "description": _FILE_PART.format(role="human-written"),
                        },
                        "machine": {
                            "type": "string",
                            "format": "binary",
                            "description": _FILE_PART.format(role="LLM-written"),
                        },
                        "text_col": {"type": "string", "description": "the files' text column (default: text)"},
                        "replace": {"type": "boolean", "description": "drop the role's stored texts first"},
                    },
                }
            },
        },
        "required": True,
    }
}
_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off", ""}
JSON_ORIGIN = "JSON request"
_ITEM_KINDS = {"str", "dict[str,any]"}  # pydantic's names of the members of ``str | dict[str, Any]``


@dataclass
class Upload:
    """The texts of one request per role, in order, and where they came from."""

    texts: dict[str, list[str]] = field(default_factory=dict)
    origins: dict[str, list[str]] = field(default_factory=dict)
    replace: bool = False

    def add(self, role: str, texts: list[str], origin: str) -> None:
        self.texts.setdefault(role, []).extend(texts)
        self.origins.setdefault(role, []).append(origin)

    def fingerprint(self, task: str) -> str:
        """The same for the same texts of each role, origins and ``replace``, however they were sent."""
        head = {"task": task, "replace": self.replace, "origins": self.origins}
        return fingerprint(head, *(json.dumps(self.texts.get(role)).encode() for role in ROLES))


def _errors(exc: ValidationError) -> str:
    """Pydantic's errors, one per location (an item that is neither a text nor an object is one error)."""
    said: dict[str, str] = {}
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        if loc and loc[-1] in _ITEM_KINDS:
            said[".".join(loc[:-1])] = "must be a text, or an object holding the text under text_col"
        else:
            said.setdefault(".".join(loc) or "body", error["msg"])
    return "; ".join(f"{where}: {message}" for where, message in list(said.items())[:5])


def _item_texts(role: str, items: list[str | dict[str, Any]], text_col: str) -> list[str]:
    """The non-blank texts of a JSON list: strings, or objects holding the text under ``text_col``."""
    texts = []
    for number, item in enumerate(items):
        value: Any = item
        if isinstance(item, dict):
            if text_col not in item:
                present = ", ".join(map(repr, item)) or "none"
                raise Problem(
                    422,
                    f"{role}[{number}]: no such column: text_col {text_col!r}. Columns in this item: {present}",
                    part=role,
                    column=text_col,
                )
            value = item[text_col]
            if value is not None and not isinstance(value, str):
                raise Problem(
                    422,
                    f"{role}[{number}]: column {text_col!r} holds {type(value).__name__} {value!r:.60}, not text",
                    part=role,
                    column=text_col,
                )
        if isinstance(value, str) and value.strip():
            texts.append(value)
    return texts


async def _json_upload(request: Request, settings: ServiceSettings) -> Upload:
    raw = await read_limited(request, settings.max_upload_bytes)
    try:
        body = TaskReferencesRequest.model_validate_json(raw)
    except ValidationError as exc:
        raise Problem(422, f"the JSON body is not a valid task references request: {_errors(exc)}") from None
    given = {role: items for role in ROLES if (items := getattr(body, role)) is not None}
    if not given:
        raise Problem(422, "give the task's texts as 'human' and/or 'machine' lists")
    _check_count(sum(len(items) for items in given.values()), settings)
    upload = Upload(replace=body.replace)
    for role, items in given.items():
        upload.add(role, _item_texts(role, items, body.text_col), JSON_ORIGIN)
    return upload


def _check_count(n: int, settings: ServiceSettings) -> None:
    limit = settings.max_rows_per_audit
    if n > limit:
        raise Problem(413, f"{n} texts; the limit is {limit} texts per request", limit=limit)


def _flag(name: str, value: str) -> bool:
    if value.strip().lower() in _TRUE:
        return True
    if value.strip().lower() in _FALSE:
        return False
    raise Problem(422, f"{name} must be true or false, not {value!r}")


async def _multipart_upload(
    request: Request, settings: ServiceSettings
) -> tuple[list[tuple[str, str, bytes]], str, bool]:
    """The uploaded files (role, safe name, bytes), the text column and ``replace``."""
    check_multipart_size(request, settings.max_upload_bytes)
    form = await request.form(max_part_size=settings.max_upload_bytes)
    files = []
    for key, value in form.multi_items():
        if isinstance(value, str):
            if key in ROLES:
                raise Problem(422, f"'{key}' must be a file part (or send the texts as JSON lists)")
            continue
        if key not in ROLES:
            raise Problem(422, f"unexpected file part {key!r}: send the references as 'human' and/or 'machine' files")
        files.append((key, stored_name(value.filename or "", f"the {key} file"), await value.read()))
    if not files:
        raise Problem(422, "multipart uploads need a 'human' and/or a 'machine' file part")
    if sum(len(data) for _, _, data in files) > settings.max_upload_bytes:
        raise exceeds(settings.max_upload_bytes)
    named = [(name, data) for _, name, data in files]
    await run_in_threadpool(check_decompressed, named, settings.max_decompressed_bytes)
    text_col, replace = form.get("text_col"), form.get("replace")
    return (
        files,
        text_col if isinstance(text_col, str) and text_col else "text",
        _flag("replace", replace) if isinstance(replace, str) else False,
    )


def _read_files(files: list[tuple[str, str, bytes]], text_col: str, replace: bool, settings: ServiceSettings) -> Upload:
    """The texts of the uploaded files, read as the command line reads reference files."""
    upload = Upload(replace=replace)
    with tempfile.TemporaryDirectory() as tmp:
        for number, (role, name, data) in enumerate(files):
            path = Path(tmp) / str(number) / name
            path.parent.mkdir()
            path.write_bytes(data)
            try:
                require_columns(path, {"text_col": text_col})
                texts = read_texts(path, text_col)
            except ReadError as exc:
                said = str(exc).replace(str(path), name)
                raise Problem(422, f"{role}: {said}", part=role, file=name) from None
            if not texts:
                raise Problem(422, f"{role}: {name}: column {text_col!r} holds no non-blank text", part=role, file=name)
            upload.add(role, texts, f"upload {name}")
            _check_count(sum(len(t) for t in upload.texts.values()), settings)
    return upload


def _stored_texts(tasks: TenantTasks, task: str, before: TaskInfo | None, role: str, replace: bool) -> set[str]:
    if replace or before is None or getattr(before, role) is None:
        return set()
    return set(tasks.texts(task, role)["text"])


def _store(tasks: TenantTasks, task: str, upload: Upload) -> TaskReferencesAdded:
    """Store every role of the upload, unscored, or nothing (each role is checked first)."""
    with tasks.lock(task, REQUEST_LOCK_SECONDS):
        return _store_locked(tasks, task, upload)


def _store_locked(tasks: TenantTasks, task: str, upload: Upload) -> TaskReferencesAdded:
    try:
        before: TaskInfo | None = tasks.info(task)
    except TaskError:
        before = None
    for role, texts in upload.texts.items():
        if not texts:
            raise Problem(422, f"task {task!r}: no {role} texts given (empty, or all blank)", task=task, role=role)
        total = len(_stored_texts(tasks, task, before, role, upload.replace) | set(texts))
        if total < MIN_TEXTS:
            raise Problem(
                422,
                f"task {task!r}: the {role} reference would hold {total} text(s); at least {MIN_TEXTS} are "
                f"needed (and {FEW_TEXTS}+ for useful error rates)",
                task=task,
                role=role,
            )
    stored, info = {}, before
    for role, texts in upload.texts.items():
        kept = getattr(before, role) if before is not None and not upload.replace else None
        try:
            info = tasks.add(task, role, texts, None, "", ", ".join(upload.origins[role]), replace=upload.replace)
        except TaskError as exc:
            raise Problem(422, str(exc), task=task, role=role) from None
        stored[role] = getattr(info, role).n_texts - (kept.n_texts if kept else 0)
    if info is None:
        raise Problem(422, "give the task's texts as 'human' and/or 'machine'")
    return TaskReferencesAdded(**info.summary(), stored=RoleCounts(**stored))


_ADD = "addTaskReferences"  # the operation idempotency keys of reference uploads belong to


def _store_once(
    tasks: TenantTasks, task: str, upload: Upload, session: Session, tenant_id: str, key: str
) -> tuple[TaskReferencesAdded, bool]:
    """Store the upload once per Idempotency-Key: the answer, and whether it is the first
    request's answer again (a retry). The key is looked up and stored under the task's lock, so
    that a retry racing the first request waits for it and then answers as its retry."""
    request_hash = upload.fingerprint(task)
    with tasks.lock(task, REQUEST_LOCK_SECONDS):
        if (row := earlier_row(session, tenant_id, _ADD, key, request_hash)) is not None:
            return TaskReferencesAdded.model_validate(row.response), True
        added = _store_locked(tasks, task, upload)
        remember(session, tenant_id, _ADD, key, request_hash, f"/v1/tasks/{task}", added.model_dump(mode="json"))
        try:
            session.commit()
        except IntegrityError:
            # The same key, committed meanwhile by a request for another task (the lock is per
            # task): that one is the key's first request, so this one is another request with it.
            session.rollback()
            if (row := earlier_row(session, tenant_id, _ADD, key, request_hash)) is None:
                raise
            return TaskReferencesAdded.model_validate(row.response), True
    return added, False


@router.post(
    "/tasks/{task}/references",
    operation_id="addTaskReferences",
    status_code=201,
    response_model=TaskReferencesAdded,
    openapi_extra=_REFERENCES_BODY,
    responses={
        200: {
            "description": "a retry: the answer the first request with this Idempotency-Key got, with its Location "
            f"and `{REPLAYED_HEADER}: true` (nothing stored again)",
            "model": TaskReferencesAdded,
        },
        **problem_responses(
            400,
            (
                409,
                "an audit is scoring this task's references (retry after `retry_after` seconds), or the "
                "Idempotency-Key was first sent with another request",
            ),
            (413, "the upload or its decompressed size is too large, or too many texts (`limit`)"),
            (415, "not JSON or multipart, or a file of unknown format"),
            (422, "no usable texts, too few of them, an unknown column or a task name no task can have"),
        ),
    },
)
async def add_task_references(
    task: str,
    request: Request,
    response: Response,
    tasks: TasksDep,
    settings: SettingsDep,
    session: SessionDep,
    tenant: TenantDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> TaskReferencesAdded:
    """Store human and/or LLM-written texts of a task for this key's tenant: files (multipart
    parts `human`, `machine`, with `text_col` and `replace`) or JSON lists. They are added to
    the role's stored texts unless `replace`; the first audit using the task scores them. With an
    `Idempotency-Key`, a retry of the same upload answers 200 with the first answer (nothing is
    stored again); the same key with another upload is 409."""
    valid_name(task)
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        files, text_col, replace = await _multipart_upload(request, settings)
        upload = await run_in_threadpool(_read_files, files, text_col, replace, settings)
    elif content_type.startswith("application/json"):
        upload = await _json_upload(request, settings)
    else:
        raise Problem(
            415,
            "send the references as application/json lists or as a multipart/form-data upload, "
            f"not {content_type or 'no content type'}",
        )
    response.headers["Location"] = f"/v1/tasks/{task}"
    if not idempotency_key:
        return await run_in_threadpool(_store, tasks, task, upload)
    added, replayed = await run_in_threadpool(_store_once, tasks, task, upload, session, tenant.id, idempotency_key)
    if replayed:
        response.status_code = 200
        response.headers[REPLAYED_HEADER] = "true"
    return added


@router.get("/tasks", operation_id="listTasks", response_model=list[TaskSummary])
def list_tasks(tasks: TasksDep) -> list[TaskSummary]:
    """This key's tasks and how many references of each role they hold."""
    found = []
    for name in tasks.names():
        try:
            found.append(TaskSummary(**tasks.info(name).summary()))
        except TaskError:  # removed since it was listed
            continue
    return found


@router.get(
    "/tasks/{task}", operation_id="getTask", response_model=TaskDetail, responses=problem_responses(_NOT_FOUND, 422)
)
def get_task(task: str, tasks: TasksDep) -> TaskDetail:
    """Everything stored about one task: per role, the number of texts, their origins and the model that scored them."""
    return TaskDetail.model_validate(tasks.require(task).model_dump())


@router.delete(
    "/tasks/{task}",
    operation_id="deleteTask",
    status_code=204,
    response_class=Response,
    responses=problem_responses(_NOT_FOUND, _SCORING, 422),
)
def delete_task(task: str, tasks: TasksDep) -> Response:
    """Delete a task's references (audits already queued with it then fail)."""
    tasks.require(task)
    with tasks.lock(task, REQUEST_LOCK_SECONDS):
        try:
            tasks.remove(task)
        except TaskError:
            raise missing_task(task) from None
    return Response(status_code=204)


__all__ = ["router"]
