"""``Idempotency-Key`` on submissions (``POST /v1/audits``, ``POST /v1/tasks/{task}/references``):
a client that retries a request (a timeout, a dropped connection, a restarted proxy) sends the
same key, and gets the resource the first request created instead of a second one; the same key
with another request is refused (409).

Keys are stored per tenant and operation in the database (``idempotency_keys``), with a
fingerprint of the request as parsed (so a multipart upload retried with another boundary is
the same request) and the id of what it created. The row is written in the transaction that
creates the resource, so two requests racing with one key create one resource: the loser's
insert breaks the unique constraint, and it answers as a retry. Task references live in files,
not in the database: their key is looked up, the upload stored and the key written while the
task's lock is held, so racing retries of one upload store it once; a retry gets the first
answer, kept with the key (``response``)."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any

from fastapi import Header
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.db import IdempotencyKey
from api.problems import Problem

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias=HEADER,
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="any unique string of up to 255 printable ASCII characters (a UUID, say): a retry with the same "
        "key and the same request returns what the first created (200) instead of creating it again; the same key "
        "with another request is 409. Keys are per API key's tenant and kept with what they created.",
    ),
]


def fingerprint(head: dict[str, Any], *payloads: bytes) -> str:
    """SHA-256 of a request as parsed: its options (canonical JSON) and its payloads' digests."""
    digest = hashlib.sha256(json.dumps(head, sort_keys=True, default=str).encode())
    for payload in payloads:
        digest.update(hashlib.sha256(payload).digest())
    return digest.hexdigest()


def earlier(session: Session, tenant_id: str, operation: str, key: str, request_hash: str) -> str | None:
    """The id of what the first request with this key created, or None for a new key; 409 when
    the key came with another request."""
    row = earlier_row(session, tenant_id, operation, key, request_hash)
    return row.resource_id if row else None


def earlier_row(session: Session, tenant_id: str, operation: str, key: str, request_hash: str) -> IdempotencyKey | None:
    """The stored key (what the first request created, and the answer it got when that was
    stored), or None for a new key; 409 when the key came with another request."""
    row = session.scalar(
        select(IdempotencyKey).where(
            IdempotencyKey.tenant_id == tenant_id, IdempotencyKey.operation == operation, IdempotencyKey.key == key
        )
    )
    if row is None:
        return None
    if row.request_hash != request_hash:
        raise Problem(
            409,
            f"the {HEADER} {key!r} was first sent with another request (which created {row.resource_id}); "
            "send the same request to get its answer again, or a new key for a new request",
        )
    return row


def remember(
    session: Session,
    tenant_id: str,
    operation: str,
    key: str,
    request_hash: str,
    resource_id: str,
    response: dict[str, Any] | None = None,
) -> None:
    """Store the key with what its request created and, where a retry must get the first answer
    rather than the resource's state now, that answer (in the caller's transaction)."""
    session.add(
        IdempotencyKey(
            tenant_id=tenant_id,
            operation=operation,
            key=key,
            request_hash=request_hash,
            resource_id=resource_id,
            response=response,
        )
    )
