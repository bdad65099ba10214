"""API keys: random, shown once, stored only as a SHA-256 hash (keys are 256-bit random,
so a fast hash is enough; there is nothing to brute-force)."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.db import ApiKey, Tenant, utcnow

KEY_PREFIX = "aud_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(session: Session, tenant_name: str) -> tuple[str, ApiKey]:
    """A new key for ``tenant_name`` (created if new). Returns the key itself, once."""
    tenant = session.scalar(select(Tenant).where(Tenant.name == tenant_name))
    if tenant is None:
        tenant = Tenant(name=tenant_name)
        session.add(tenant)
        session.flush()
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    record = ApiKey(tenant_id=tenant.id, prefix=key[:12], key_hash=hash_key(key))
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
    record = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key), ApiKey.revoked_at.is_(None)))
    return session.get(Tenant, record.tenant_id) if record else None


def list_keys(session: Session) -> list[tuple[str, str, str, str | None]]:
    rows = session.execute(select(Tenant.name, ApiKey.prefix, ApiKey.created_at, ApiKey.revoked_at).join(Tenant)).all()
    return [
        (
            name,
            prefix,
            created.isoformat(timespec="seconds"),
            revoked.isoformat(timespec="seconds") if revoked else None,
        )
        for name, prefix, created, revoked in rows
    ]
