"""The per-API-key rate limit of /v1 (api.ratelimit): past AUDITOR_RATE_LIMIT_PER_MINUTE requests
a key gets 429 with Retry-After and a Problem body; other keys, unknown keys (401) and the health
endpoints are not affected; 0 turns it off; an unreachable Redis lets requests through.

In-process on apps without models, with the limit's windows in memory and in Redis."""

from __future__ import annotations

import asyncio
import logging

import pytest
from fastapi.testclient import TestClient

LIMIT = 3


def make_app(tmp_path, **settings):
    from api.main import create_app
    from api.settings import ServiceSettings

    return create_app(
        ServiceSettings(cache_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'auditor.db'}", **settings),
        load_models=False,
    )


def new_key(app, tenant: str) -> str:
    from api.keys import create_key

    with app.state.sessions() as session:
        return create_key(session, tenant)[0]


@pytest.fixture(params=["memory", "redis"])
def limited(request, tmp_path):
    """An app limited to LIMIT requests per key per minute, its windows in memory or in Redis."""
    extra = {"redis_url": request.getfixturevalue("redis_url")} if request.param == "redis" else {}
    app = make_app(tmp_path, rate_limit_per_minute=LIMIT, **extra)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield app, client


def test_a_key_past_its_limit_gets_429_with_retry_after_and_a_problem(limited):
    app, client = limited
    key = {"X-API-Key": new_key(app, "limited")}
    answers = [client.get("/v1/tasks", headers=key) for _ in range(LIMIT)]
    assert [a.status_code for a in answers] == [200] * LIMIT

    refused = client.get("/v1/tasks", headers=key)
    assert refused.status_code == 429
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    body = refused.json()
    assert (body["status"], body["title"], body["limit"]) == (429, "Too Many Requests", LIMIT)
    assert body["retry_after"] == int(refused.headers["Retry-After"])
    assert f"more than {LIMIT} requests" in body["detail"] and body["instance"] == "/v1/tasks"
    assert body["request_id"] == refused.headers["X-Request-ID"]
    # every /v1 route counts (a POST too), and a refused request changes nothing
    posted = client.post("/v1/tasks/limited-task/references", headers=key, json={"human": ["one text", "two texts"]})
    assert posted.status_code == 429
    assert client.get("/v1/tasks/limited-task", headers=key).status_code == 429
    if app.state.settings.redis_url:  # the windows are in Redis, shared by every web process
        import redis

        from api.keys import hash_key

        found = redis.Redis.from_url(app.state.settings.redis_url).keys(
            f"auditor-limits:*{hash_key(key['X-API-Key'])}*"
        )
        assert len(found) == 1


def test_the_limit_is_per_key_and_spares_unknown_keys_and_health(limited):
    app, client = limited
    first, second = new_key(app, "tenant-one"), new_key(app, "tenant-one")
    for _ in range(LIMIT + 2):
        client.get("/v1/tasks", headers={"X-API-Key": first})
    assert client.get("/v1/tasks", headers={"X-API-Key": first}).status_code == 429
    # another key of the same tenant has a window of its own
    assert client.get("/v1/tasks", headers={"X-API-Key": second}).status_code == 200
    # an unknown key is refused as unknown, however often it is sent
    for _ in range(LIMIT + 2):
        unknown = client.get("/v1/tasks", headers={"X-API-Key": "aud_not-a-key"})
        assert unknown.status_code == 401
    # health, metrics and the OpenAPI document are not limited, with or without the key
    for path in ("/healthz", "/metrics", "/openapi.json"):
        for _ in range(LIMIT + 1):
            assert client.get(path, headers={"X-API-Key": first}).status_code == 200, path


def test_zero_turns_the_limit_off(tmp_path):
    app = make_app(tmp_path, rate_limit_per_minute=0)
    assert app.state.rate_limit is None
    with TestClient(app, raise_server_exceptions=False, headers={"X-API-Key": new_key(app, "unlimited")}) as client:
        assert {client.get("/v1/tasks").status_code for _ in range(LIMIT * 4)} == {200}


def test_the_default_limit_lets_a_burst_of_hundreds_through():
    """The default (600 per minute) leaves room for the load benchmark's 328 requests of one key."""
    from api.problems import Problem
    from api.ratelimit import RateLimit
    from api.settings import ServiceSettings

    assert ServiceSettings().rate_limit_per_minute == 600
    limit = RateLimit(600)

    async def burst() -> tuple[int, Problem | None]:
        passed = 0
        try:
            for _ in range(601):
                await limit.check("one-key")
                passed += 1
        except Problem as refused:
            return passed, refused
        return passed, None

    passed, refused = asyncio.run(burst())
    assert passed == 600 and refused is not None and refused.status == 429


def test_an_unreachable_redis_lets_requests_through_with_a_warning(caplog):
    from api.ratelimit import RateLimit

    limit = RateLimit(1, "redis://127.0.0.1:1/0")  # nothing listens on port 1
    asked = []
    make = limit._limiter
    limit._limiter = lambda: asked.append(1) or make()  # type: ignore[method-assign]

    async def requests() -> None:
        for _ in range(3):
            await limit.check("some-key")

    with caplog.at_level(logging.WARNING, logger="api.ratelimit"):
        asyncio.run(requests())
    warnings = [r for r in caplog.records if "rate limit not applied" in r.getMessage()]
    assert len(warnings) == 1  # once, not once per request
    assert len(asked) == 1  # and the requests after the failure did not wait on Redis again


def test_the_openapi_document_names_the_429_of_every_v1_operation(limited):
    _, client = limited
    document = client.get("/openapi.json").json()
    v1 = [(path, op) for path, item in document["paths"].items() if path.startswith("/v1") for op in item.values()]
    assert v1 and all("429" in op["responses"] for _, op in v1)
    health = document["paths"]["/healthz"]["get"]["responses"]
    assert "429" not in health
