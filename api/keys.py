"""API keys: random, shown once, stored only as a SHA-256 hash (keys are 256-bit random,
so a fast hash is enough; there is nothing to brute-force).

A key is looked up in the database on every request, never cached: a revoked key
(``auditor keys revoke``) or one past its ``expires_at`` (``auditor keys create --expires-in``)
is refused (401) from the next request on, by every web process."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from api.db import ApiKey, Tenant, utcnow

KEY_PREFIX = "aud_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


_DURATION = re.compile(r"(\d+)\s*([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """``90m``, ``12h``, ``30d``, ``2w`` (or ``3600s``) as a timedelta; ValueError otherwise."""
    found = _DURATION.fullmatch(text.strip().lower())
    if not found or int(found[1]) == 0:
        raise ValueError(f"{text!r} is not a duration: give a positive number and a unit, e.g. 90m, 12h, 30d or 2w")
    return timedelta(**{_UNITS[found[2]]: int(found[1])})


def create_key(session: Session, tenant_name: str, expires_at: datetime | None = None) -> tuple[str, ApiKey]:
    """A new key for ``tenant_name`` (created if new), valid until ``expires_at`` (naive UTC;
    None: until revoked). Returns the key itself, once."""
    tenant = session.scalar(select(Tenant).where(Tenant.name == tenant_name))
    if tenant is None:
        tenant = Tenant(name=tenant_name)
        session.add(tenant)
        session.flush()
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    record = ApiKey(tenant_id=tenant.id, prefix=key[:12], key_hash=hash_key(key), expires_at=expires_at)
    session.add(record)
    session.commit()
    return key, record


def revoke_key(session: Session, key_or_prefix: str) -> int:
    """Revoke by the full key or by its first 12 characters; returns how many were revoked."""
    condition = (
        ApiKey.key_hash == hash_key(key_or_prefix) if len(key_or_prefix) > 12 else ApiKey.prefix == key_or_prefix
    )
    records = session.scalars(select(ApiKey).where(condition, ApiKey.revoked_at.is_(None))).all()
    for record in records:
        record.revoked_at = utcnow()
    session.commit()
    return len(records)


def tenant_for_key(session: Session, key: str) -> Tenant | None:
    """The key's tenant, or None when the key is unknown, revoked or expired."""
    # One query per request (keys are never cached, so a revocation holds from the next request).
    return session.scalar(
        select(Tenant)
        .join(ApiKey)
        .where(
            ApiKey.key_hash == hash_key(key),
            ApiKey.revoked_at.is_(None),
            or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > utcnow()),
        )
    )


def list_keys(session: Session) -> list[tuple[str, str, str, str | None, str | None]]:
    """(tenant, prefix, created, revoked, expires) of every key, times as ISO 8601 UTC."""
    rows = session.execute(
        select(Tenant.name, ApiKey.prefix, ApiKey.created_at, ApiKey.revoked_at, ApiKey.expires_at).join(Tenant)
    ).all()
    return [
        (name, prefix, created.isoformat(timespec="seconds"), _iso(revoked), _iso(expires))
        for name, prefix, created, revoked, expires in rows
    ]


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment else None
