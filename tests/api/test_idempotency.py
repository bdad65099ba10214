"""``Idempotency-Key`` on POST /v1/audits, against SQLite and PostgreSQL: a retry with the same key
and request gets the first job (200, no second job row); the same key with another request is 409;
keys are per tenant; a refused request stores no key.

In-process on an app without models (submitting an audit needs none), each test on a fresh
database (the ``fresh_database`` fixture: a SQLite file, or a new database on the PostgreSQL server)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

ROWS = [{"answer": f"answer number {i} about the weather", "vendor": "acme" if i % 2 else "beta"} for i in range(8)]
BODY = {"rows": ROWS, "text_col": "answer", "vendor_col": "vendor"}
CSV = ("answer,vendor\n" + "".join(f"{r['answer']},{r['vendor']}\n" for r in ROWS)).encode()


@pytest.fixture
def app(fresh_database, tmp_path):
    from api.main import create_app
    from api.settings import ServiceSettings

    return create_app(ServiceSettings(cache_dir=tmp_path, database_url=fresh_database), load_models=False)


@pytest.fixture
def clients(app):
    """A client for each of two tenants."""
    from api.keys import create_key

    with app.state.sessions() as session:
        keys = {tenant: create_key(session, tenant)[0] for tenant in ("tenant-a", "tenant-b")}
    with TestClient(app, raise_server_exceptions=False) as client:
        yield {tenant: _Client(client, key) for tenant, key in keys.items()}


class _Client:
    def __init__(self, client: TestClient, key: str):
        self.client, self.key = client, key

    def submit(self, idempotency_key: str | bytes | None = None, json: dict | None = None, **kwargs):
        headers = {"X-API-Key": self.key} | ({"Idempotency-Key": idempotency_key} if idempotency_key else {})
        if json is None and "files" not in kwargs:
            json = BODY
        return self.client.post("/v1/audits", headers=headers, json=json, **kwargs)


def job_rows(app) -> list[tuple[str, str]]:
    """(job id, tenant name) of every audit job in the database."""
    with app.state.sessions() as session:
        query = sa.text("SELECT j.id, t.name FROM audit_jobs j JOIN tenants t ON t.id = j.tenant_id ORDER BY j.id")
        return [tuple(row) for row in session.execute(query).all()]


def test_the_same_key_and_request_return_the_first_job_and_create_no_other(app, clients):
    a = clients["tenant-a"]
    first = a.submit("delivery-2025-01-31")
    assert first.status_code == 202, first.text
    assert "Idempotent-Replayed" not in first.headers
    again = a.submit("delivery-2025-01-31")
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Location"] == first.headers["Location"] == f"/v1/audits/{first.json()['id']}"
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["params"] == first.json()["params"]
    assert job_rows(app) == [(first.json()["id"], "tenant-a")]


def test_a_multipart_retry_is_the_same_request_whatever_its_boundary(app, clients):
    a = clients["tenant-a"]
    form = {"text_col": "answer", "vendor_col": "vendor", "level": "0.95"}
    first = a.submit("upload-1", files={"file": ("delivery.csv", CSV)}, data=form)
    again = a.submit("upload-1", files={"file": ("delivery.csv", CSV)}, data=form)
    assert (first.status_code, again.status_code) == (202, 200), again.text
    assert again.json()["id"] == first.json()["id"] and len(job_rows(app)) == 1


@pytest.mark.parametrize(
    "other",
    [
        {"json": BODY | {"rows": ROWS[:-1]}},  # another delivery
        {"json": BODY | {"level": 0.95}},  # the same delivery with another option
        {"json": BODY | {"human_reference": ["a human text"]}},  # ... or with references
        {"files": {"file": ("delivery.csv", CSV)}, "data": {"text_col": "answer", "vendor_col": "vendor"}},
    ],
    ids=["rows", "option", "references", "as-a-file"],
)
def test_the_same_key_with_another_request_is_409_and_creates_nothing(app, clients, other):
    a = clients["tenant-a"]
    first = a.submit("key-1")
    assert first.status_code == 202
    conflict = a.submit("key-1", **other)
    assert conflict.status_code == 409, conflict.text
    assert conflict.headers["content-type"] == "application/problem+json"
    detail = conflict.json()["detail"]
    assert "Idempotency-Key 'key-1'" in detail and "another request" in detail and first.json()["id"] in detail
    assert "new key" in detail
    assert len(job_rows(app)) == 1
    # the first request, sent again, still gets its job
    assert a.submit("key-1").json()["id"] == first.json()["id"]


def test_keys_are_per_tenant(app, clients):
    a, b = clients["tenant-a"].submit("shared-key"), clients["tenant-b"].submit("shared-key")
    assert a.status_code == b.status_code == 202 and a.json()["id"] != b.json()["id"]
    # another tenant's key with another body is no conflict either
    other = clients["tenant-b"].submit("only-a-uses-this")
    mine = clients["tenant-a"].submit("only-a-uses-this", json=BODY | {"level": 0.95})
    assert other.status_code == mine.status_code == 202
    assert sorted(job_rows(app)) == sorted(
        [(a.json()["id"], "tenant-a"), (b.json()["id"], "tenant-b"), (other.json()["id"], "tenant-b")]
        + [(mine.json()["id"], "tenant-a")]
    )
    # and each tenant's retry finds its own job
    assert clients["tenant-b"].submit("shared-key").json()["id"] == b.json()["id"]


def test_without_a_key_every_submission_is_a_new_job(app, clients):
    a = clients["tenant-a"]
    assert a.submit().json()["id"] != a.submit().json()["id"]
    assert len(job_rows(app)) == 2


def test_a_refused_request_stores_no_key(app, clients):
    """A 422 created nothing, so the corrected request with the same key is a new submission."""
    a = clients["tenant-a"]
    refused = a.submit("retry-me", json=BODY | {"text_col": "no_such_column"})
    assert refused.status_code == 422 and "no_such_column" in refused.json()["detail"]
    accepted = a.submit("retry-me")
    assert accepted.status_code == 202 and len(job_rows(app)) == 1


@pytest.mark.parametrize(
    "key", ["x" * 256, "has spaces", "ünïcode".encode("latin-1")], ids=["long", "spaces", "latin-1"]
)
def test_an_unusable_key_is_422(clients, key):
    response = clients["tenant-a"].submit(key)
    assert response.status_code == 422
    assert [e["location"] for e in response.json()["errors"]] == ["header.Idempotency-Key"]


def test_the_openapi_document_offers_the_key(clients):
    document = clients["tenant-a"].client.get("/openapi.json").json()
    operation = document["paths"]["/v1/audits"]["post"]
    header = next(p for p in operation["parameters"] if p["name"] == "Idempotency-Key")
    assert header["in"] == "header" and not header.get("required", False)
    assert {"200", "202", "409"} <= set(operation["responses"])


@pytest.mark.parametrize("same_request", [True, False], ids=["same-request", "another-request"])
def test_a_request_racing_another_with_its_key_creates_no_second_job(app, clients, monkeypatch, same_request):
    """Two requests with one key at once: both find no key, both insert; the database's unique
    constraint refuses the second insert, whose job is rolled back with it, and the second
    answers as a retry (200, the first job) or, with another request, 409. The race is made
    certain here by hiding the first request's key from the second's lookup."""
    import api.routes.audits

    a = clients["tenant-a"]
    first = a.submit("racing-key")
    assert first.status_code == 202
    real, looked = api.routes.audits.earlier, []

    def not_committed_yet(*args):
        looked.append(args)
        return None if len(looked) == 1 else real(*args)

    monkeypatch.setattr(api.routes.audits, "earlier", not_committed_yet)
    second = a.submit("racing-key", json=BODY if same_request else BODY | {"level": 0.95})
    assert len(looked) == 2  # the lookup before the insert, and the one after the refused commit
    if same_request:
        assert second.status_code == 200 and second.json()["id"] == first.json()["id"], second.text
        assert second.headers["Idempotent-Replayed"] == "true"
    else:
        assert second.status_code == 409 and "another request" in second.json()["detail"]
    assert job_rows(app) == [(first.json()["id"], "tenant-a")]
    with app.state.sessions() as session:
        assert session.execute(sa.text("SELECT COUNT(*) FROM audit_files")).scalar() == 0
        assert session.execute(sa.text("SELECT COUNT(*) FROM idempotency_keys")).scalar() == 1
