"""API keys stop working at once: a key revoked with `auditor keys revoke` (by its prefix or in
full) or past its expiry (`auditor keys create --expires-in`) is refused with 401 from the next
request on (keys are looked up per request, never cached); the tenant's other keys go on working.

In-process on an app without models, on SQLite and on PostgreSQL (``fresh_database``), with the
command line run as its own process against the same database."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient


@pytest.fixture
def app(fresh_database, tmp_path):
    from api.main import create_app
    from api.settings import ServiceSettings

    return create_app(ServiceSettings(cache_dir=tmp_path, database_url=fresh_database), load_models=False)


@pytest.fixture
def client(app):
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def cli(app, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDITOR_")}
    env |= {"AUDITOR_DATABASE_URL": app.state.settings.database, "AUDITOR_CACHE_DIR": str(app.state.settings.cache_dir)}
    return subprocess.run(
        [sys.executable, "-m", "auditor.cli", *args], env=env, capture_output=True, text=True, check=check
    )


def new_key(app, tenant: str, **kwargs) -> str:
    from api.keys import create_key

    with app.state.sessions() as session:
        return create_key(session, tenant, **kwargs)[0]


def answer(client, key: str):
    return client.get("/v1/tasks", headers={"X-API-Key": key})


def assert_refused(response) -> None:
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["WWW-Authenticate"] == "ApiKey"
    assert response.json()["detail"] == "this API key is unknown, revoked or expired"


def test_a_key_revoked_on_the_command_line_is_refused_at_the_next_request(app, client):
    key, other = new_key(app, "revoking"), new_key(app, "revoking")
    assert answer(client, key).status_code == 200  # a request that would fill any cache of valid keys
    revoked = cli(app, "keys", "revoke", key[:12])
    assert "revoked 1 key(s)" in revoked.stdout
    assert_refused(answer(client, key))
    assert answer(client, other).status_code == 200  # the tenant's other key is not revoked
    listed = cli(app, "keys", "list").stdout
    assert f"{key[:12]}\tcreated" in listed and "revoked" in listed.split(key[:12])[1].splitlines()[0]
    again = cli(app, "keys", "revoke", key[:12], check=False)  # nothing left to revoke: an error
    assert again.returncode != 0 and "no active key matches" in again.stderr + again.stdout


def test_a_key_revoked_in_full_is_refused_and_unknown_keys_are_alike(app, client):
    from api.keys import revoke_key

    key = new_key(app, "revoking-in-full")
    assert answer(client, key).status_code == 200
    with app.state.sessions() as session:
        assert revoke_key(session, key) == 1
    assert_refused(answer(client, key))
    assert_refused(answer(client, key[:-1] + ("A" if key[-1] != "A" else "B")))  # unknown: the same answer


def test_an_expired_key_is_refused_and_one_not_yet_expired_works(app, client):
    from api.db import ApiKey, utcnow
    from api.keys import hash_key

    expired = new_key(app, "expiring", expires_at=utcnow() - timedelta(seconds=1))
    valid = new_key(app, "expiring", expires_at=utcnow() + timedelta(days=1))
    assert_refused(answer(client, expired))
    assert answer(client, valid).status_code == 200
    # a key whose expiry is moved into the past is refused from the next request on
    with app.state.sessions() as session:
        record = session.scalar(sa.select(ApiKey).where(ApiKey.key_hash == hash_key(valid)))
        record.expires_at = utcnow() - timedelta(seconds=1)
        session.commit()
    assert_refused(answer(client, valid))


def test_the_command_line_creates_keys_that_expire(app, client):
    from api.db import ApiKey, utcnow
    from api.keys import hash_key

    made = cli(app, "keys", "create", "--tenant", "expiring-cli", "--expires-in", "30d")
    key = made.stdout.strip().splitlines()[-1]
    assert "valid until" in made.stdout
    assert answer(client, key).status_code == 200
    with app.state.sessions() as session:
        expires = session.scalar(sa.select(ApiKey.expires_at).where(ApiKey.key_hash == hash_key(key)))
    assert expires is not None and timedelta(days=29) < expires - utcnow() <= timedelta(days=30)
    assert f"expires {expires.isoformat(timespec='seconds')}" in cli(app, "keys", "list").stdout
    bad = cli(app, "keys", "create", "--tenant", "expiring-cli", "--expires-in", "soon", check=False)
    assert bad.returncode != 0 and "not a duration" in bad.stderr + bad.stdout


@pytest.mark.parametrize(
    ("text", "duration"),
    [
        ("90m", timedelta(minutes=90)),
        ("12h", timedelta(hours=12)),
        ("30d", timedelta(days=30)),
        ("2w", timedelta(weeks=2)),
        (" 3600S ", timedelta(hours=1)),
    ],
)
def test_durations(text, duration):
    from api.keys import parse_duration

    assert parse_duration(text) == duration


@pytest.mark.parametrize("text", ["", "30", "0d", "-1d", "1y", "1.5h", "d", "1 d 2 h"])
def test_what_is_not_a_duration(text):
    from api.keys import parse_duration

    with pytest.raises(ValueError):
        parse_duration(text)


def test_keys_made_before_expiry_existed_keep_working(fresh_database):
    """A database at revision 0003 with a key: upgraded to the newest schema, the key has no expiry."""
    from alembic import command
    from alembic.config import Config

    import api.db
    from api.db import engine_for, migrate, session_factory
    from api.keys import hash_key, tenant_for_key

    config = Config()
    config.set_main_option("script_location", str(Path(api.db.__file__).parent / "migrations"))
    config.set_main_option("sqlalchemy.url", fresh_database.replace("%", "%%"))
    command.upgrade(config, "0003")
    with engine_for(fresh_database).begin() as connection:
        connection.execute(
            sa.text("INSERT INTO tenants (id, name, created_at) VALUES ('t1', 'old', CURRENT_TIMESTAMP)")
        )
        connection.execute(
            sa.text(
                "INSERT INTO api_keys (id, tenant_id, prefix, key_hash, created_at) "
                "VALUES ('k1', 't1', 'aud_oldkey12', :hash, CURRENT_TIMESTAMP)"
            ),
            {"hash": hash_key("aud_oldkey1234567890")},
        )
    migrate(fresh_database)
    with session_factory(fresh_database)() as session:
        tenant = tenant_for_key(session, "aud_oldkey1234567890")
    assert tenant is not None and tenant.name == "old"
