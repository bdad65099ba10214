"""``Idempotency-Key`` on POST /v1/tasks/{task}/references, against SQLite and PostgreSQL: a retry
with the same key and upload answers 200 with the first answer and stores nothing again; the same
key with another upload (other texts, another task, ``replace``) is 409 and stores nothing; keys
are per tenant and per operation; a refused upload stores no key.

In-process on an app without models (storing references needs none), each test on a fresh database."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

HUMAN = [f"human text number {i} of the task, about the weather" for i in range(6)]
MACHINE = [f"As an AI language model, here is machine text number {i}." for i in range(4)]
BODY = {"human": HUMAN[:4], "machine": MACHINE}
CSV = ("text\n" + "\n".join(HUMAN[:4]) + "\n").encode()


@pytest.fixture
def app(fresh_database, tmp_path):
    from api.main import create_app
    from api.settings import ServiceSettings

    return create_app(ServiceSettings(cache_dir=tmp_path, database_url=fresh_database), load_models=False)


@pytest.fixture
def clients(app):
    from api.keys import create_key

    with app.state.sessions() as session:
        keys = {tenant: create_key(session, tenant)[0] for tenant in ("tenant-a", "tenant-b")}
    with TestClient(app, raise_server_exceptions=False) as client:
        yield {tenant: _Client(client, key) for tenant, key in keys.items()}


class _Client:
    def __init__(self, client: TestClient, key: str):
        self.client, self.key = client, key

    def add(self, task: str = "weather", idempotency_key: str | None = None, **kwargs):
        headers = {"X-API-Key": self.key} | ({"Idempotency-Key": idempotency_key} if idempotency_key else {})
        if "json" not in kwargs and "files" not in kwargs:
            kwargs["json"] = BODY
        return self.client.post(f"/v1/tasks/{task}/references", headers=headers, **kwargs)

    def task(self, task: str = "weather"):
        return self.client.get(f"/v1/tasks/{task}", headers={"X-API-Key": self.key})


def stored_keys(app) -> list[tuple[str, str, str]]:
    with app.state.sessions() as session:
        query = sa.text(
            "SELECT t.name, k.operation, k.key FROM idempotency_keys k JOIN tenants t ON t.id = k.tenant_id"
        )
        return sorted(tuple(row) for row in session.execute(query).all())


def test_a_retry_gets_the_first_answer_and_stores_nothing_again(app, clients):
    a = clients["tenant-a"]
    first = a.add(idempotency_key="refs-1")
    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers
    assert first.json()["stored"] == {"human": 4, "machine": 4}
    stored = a.task().json()

    again = a.add(idempotency_key="refs-1")
    assert again.status_code == 200, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == first.headers["Location"] == "/v1/tasks/weather"
    assert again.json() == first.json()
    # nothing stored again: the same texts, origins and times (a second upload would add an origin)
    assert a.task().json() == stored
    assert stored["human"]["origins"] == ["JSON request"]
    assert stored_keys(app) == [("tenant-a", "addTaskReferences", "refs-1")]


def test_a_retry_after_other_uploads_still_gets_the_first_answer(clients):
    a = clients["tenant-a"]
    first = a.add(idempotency_key="refs-2")
    more = a.add(json={"human": HUMAN[4:]})  # another upload, without a key
    assert (first.status_code, more.status_code) == (201, 201) and more.json()["human"] == 6
    after_more = a.task().json()
    again = a.add(idempotency_key="refs-2")
    assert again.status_code == 200 and again.json() == first.json()  # the first answer: 4 human texts
    assert a.task().json() == after_more


def test_a_multipart_retry_is_the_same_upload_whatever_its_boundary(clients):
    a = clients["tenant-a"]
    first = a.add(idempotency_key="file-1", files={"human": ("human.csv", CSV)}, data={"replace": "true"})
    again = a.add(idempotency_key="file-1", files={"human": ("human.csv", CSV)}, data={"replace": "true"})
    assert (first.status_code, again.status_code) == (201, 200), again.text
    assert again.json() == first.json()
    assert a.task().json()["human"]["origins"] == ["upload human.csv"]


@pytest.mark.parametrize(
    "other",
    [
        {"json": {"human": HUMAN[:3], "machine": MACHINE}},  # other texts
        {"json": {"human": HUMAN[:4]}},  # fewer roles
        {"json": BODY | {"replace": True}},  # replace
        {"task": "another-task"},  # the same texts for another task
        {"files": {"human": ("human.csv", CSV)}},  # the human texts as a file
    ],
    ids=["texts", "roles", "replace", "task", "as-a-file"],
)
def test_the_same_key_with_another_upload_is_409_and_stores_nothing(app, clients, other):
    a = clients["tenant-a"]
    first = a.add(idempotency_key="refs-3")
    assert first.status_code == 201
    stored = a.task().json()
    conflict = a.add(idempotency_key="refs-3", **other)
    assert conflict.status_code == 409, conflict.text
    assert conflict.headers["content-type"].startswith("application/problem+json")
    detail = conflict.json()["detail"]
    assert "Idempotency-Key 'refs-3'" in detail and "another request" in detail and "/v1/tasks/weather" in detail
    assert a.task().json() == stored
    assert a.task("another-task").status_code == 404
    assert len(stored_keys(app)) == 1
    # the first upload, sent again, still gets its answer
    assert a.add(idempotency_key="refs-3").json() == first.json()


def test_keys_are_per_tenant_and_per_operation(app, clients):
    a, b = clients["tenant-a"], clients["tenant-b"]
    assert a.add(idempotency_key="shared").status_code == 201
    other = b.add(idempotency_key="shared", json={"human": HUMAN[:2]})  # another tenant: its own key
    assert other.status_code == 201 and other.json()["human"] == 2
    assert a.task().json()["human"]["n_texts"] == 4 and b.task().json()["human"]["n_texts"] == 2
    # the same key on POST /v1/audits is a key of another operation
    audit = a.client.post(
        "/v1/audits",
        headers={"X-API-Key": a.key, "Idempotency-Key": "shared"},
        json={"rows": [{"t": "a text", "v": "acme"}], "text_col": "t", "vendor_col": "v"},
    )
    assert audit.status_code == 202, audit.text
    assert stored_keys(app) == [
        ("tenant-a", "addTaskReferences", "shared"),
        ("tenant-a", "createAudit", "shared"),
        ("tenant-b", "addTaskReferences", "shared"),
    ]


def test_a_refused_upload_stores_no_key(app, clients):
    a = clients["tenant-a"]
    refused = a.add(idempotency_key="fix-me", json={"human": HUMAN[:1]})  # too few texts
    assert refused.status_code == 422
    assert stored_keys(app) == [] and a.task().status_code == 404
    accepted = a.add(idempotency_key="fix-me")
    assert accepted.status_code == 201 and accepted.json()["stored"] == {"human": 4, "machine": 4}


def test_without_a_key_every_upload_is_stored(clients):
    a = clients["tenant-a"]
    assert a.add().status_code == a.add().status_code == 201
    assert a.task().json()["human"]["origins"] == ["JSON request", "JSON request"]


def test_the_openapi_document_offers_the_key_and_the_replay(clients):
    document = clients["tenant-a"].client.get("/openapi.json").json()
    operation = document["paths"]["/v1/tasks/{task}/references"]["post"]
    assert "Idempotency-Key" in [p["name"] for p in operation["parameters"] if p["in"] == "header"]
    assert {"200", "201", "409"} <= set(operation["responses"])
