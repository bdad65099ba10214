"""The API contract: the OpenAPI document (valid, the ApiKey scheme on every /v1 operation,
camelCase operation ids, one Problem schema for every error, examples, /metrics as text), the
request id on every answer and log line, and docs pages that load nothing from the network.

The document and the headers are checked in-process on an app without models (fast tier); the
docs assets and the log lines on the real server that the other service tests use."""

from __future__ import annotations

import logging
import re
import uuid
from html.parser import HTMLParser
from http import HTTPStatus

import pytest
from fastapi.testclient import TestClient
from openapi_spec_validator import validate

PROBLEM_REF = "#/components/schemas/Problem"
CAMEL_CASE = re.compile(r"[a-z][a-z0-9]*(?:[A-Z][a-z0-9]*)*")


@pytest.fixture(scope="module")
def client(app):  # without a key: the contract holds for anonymous callers too
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="module")
def key(app) -> str:
    from api.keys import create_key

    with app.state.sessions() as session:
        return create_key(session, "contract")[0]


@pytest.fixture(scope="module")
def document(client) -> dict:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


def operations(document: dict):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def test_the_openapi_document_validates(document):
    validate(document)
    assert document["openapi"].startswith("3.1")


def test_every_v1_operation_requires_the_api_key_scheme(document):
    schemes = document["components"]["securitySchemes"]
    assert list(schemes) == ["ApiKey"]
    assert {"type": "apiKey", "in": "header", "name": "X-API-Key"}.items() <= schemes["ApiKey"].items()
    v1 = [(path, op) for path, _, op in operations(document) if path.startswith("/v1/")]
    assert len(v1) >= 12
    for path, operation in v1:
        assert operation.get("security") == [{"ApiKey": []}], path
        # the key is the security scheme, not an optional header parameter
        assert not [p for p in operation.get("parameters", []) if p["name"].lower() == "x-api-key"], path
        assert "401" in operation["responses"], path
    for path, _, operation in operations(document):
        if not path.startswith("/v1/"):
            assert "security" not in operation, path  # /healthz, /readyz and /metrics are open


def test_operation_ids_are_camel_case_and_unique(document):
    ids = [operation["operationId"] for _, _, operation in operations(document)]
    assert len(ids) == len(set(ids))
    assert all(CAMEL_CASE.fullmatch(i) for i in ids), ids
    assert {
        "scoreTexts",
        "createAudit",
        "listAudits",
        "getAudit",
        "getAuditReport",
        "addTaskReferences",
        "listTasks",
        "getTask",
        "deleteTask",
        "listVendors",
        "getVendorHistory",
        "addReferenceTexts",
        "getHealth",
        "getReadiness",
        "getMetrics",
    } == set(ids)


def test_every_error_response_is_the_problem_schema(document):
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    problem = schemas["Problem"]
    assert {"type", "title", "status", "detail", "instance", "request_id", "errors", "limit", "retry_after"} <= set(
        problem["properties"]
    )
    assert set(problem["required"]) == {"title", "status", "detail"}
    errors = 0
    for path, method, operation in operations(document):
        for status, response in operation["responses"].items():
            assert response["headers"]["X-Request-ID"]["schema"] == {"type": "string"}
            if int(status) < 400:
                continue
            errors += 1
            assert response["content"] == {"application/problem+json": {"schema": {"$ref": PROBLEM_REF}}}, (
                method,
                path,
                status,
            )
            assert response["description"]
        if operation.get("parameters") or operation.get("requestBody"):
            assert "422" in operation["responses"], (method, path)
    assert errors > 40
    statuses = {status for _, _, op in operations(document) for status in op["responses"]}
    assert {"400", "401", "404", "409", "413", "415", "422", "500", "503"} <= statuses


def test_the_main_requests_have_examples(document):
    for path in ("/v1/score", "/v1/audits", "/v1/tasks/{task}/references"):
        body = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        examples = body["examples"]
        assert examples and all("value" in example for example in examples.values()), path
    score = next(
        iter(document["paths"]["/v1/score"]["post"]["requestBody"]["content"]["application/json"]["examples"].values())
    )
    assert score["value"]["texts"]


def test_metrics_are_documented_as_prometheus_text(document, client):
    answer = document["paths"]["/metrics"]["get"]["responses"]["200"]
    assert list(answer["content"]) == ["text/plain"] and answer["content"]["text/plain"]["schema"] == {"type": "string"}
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    # the latency buckets reach the minutes that scoring a batch on CPU can take
    assert 'auditor_http_request_seconds_bucket{le="300.0"' in response.text
    assert 'auditor_http_request_seconds_bucket{le="0.005"' in response.text


def test_the_request_id_is_echoed_or_made(client, key):
    mine = "trace-" + uuid.uuid4().hex[:8]
    response = client.get("/healthz", headers={"X-Request-ID": mine})
    assert response.headers["x-request-id"] == mine
    made = client.get("/healthz").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    assert client.get("/healthz").headers["x-request-id"] != made
    for insane in ("x" * 200, "two words", "a;b"):
        replaced = client.get("/healthz", headers={"X-Request-ID": insane}).headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", replaced), insane
    unauthorized = client.get("/v1/vendors", headers={"X-Request-ID": mine})
    assert unauthorized.status_code == 401 and unauthorized.headers["x-request-id"] == mine
    assert unauthorized.json()["request_id"] == mine and unauthorized.json()["instance"] == "/v1/vendors"
    assert client.get("/v1/vendors", headers={"X-API-Key": key}).headers["x-request-id"]


def test_an_unexpected_error_is_a_problem_with_the_request_id(app, client, caplog):
    def explode():
        raise RuntimeError("simulated failure")

    app.add_api_route("/test-explode", explode, include_in_schema=False)
    with caplog.at_level("ERROR", logger="api.request_id"):
        response = client.get("/test-explode", headers={"X-Request-ID": "boom-1"})
    assert response.status_code == 500 and response.headers["x-request-id"] == "boom-1"
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["request_id"] == "boom-1" and "RuntimeError" in response.json()["detail"]
    logged = [r for r in caplog.records if r.exc_info]
    assert logged and "/test-explode" in logged[0].getMessage()


def test_a_validation_error_is_a_problem(app, client, key, monkeypatch):
    # The body is validated once the dependencies are met: a stand-in scorer (never called) will do.
    monkeypatch.setattr(app.state, "scorer", object())
    response = client.post("/v1/score", json={"text": "the wrong field"}, headers={"X-API-Key": key})
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == 422 and body["title"] == HTTPStatus(422).phrase and "texts" in body["detail"]
    assert body["errors"][0]["location"] == "body.texts" and body["errors"][0]["type"] == "missing"
    assert body["request_id"] == response.headers["x-request-id"]
    limit = client.get("/v1/audits", params={"limit": 0}, headers={"X-API-Key": key})
    assert limit.status_code == 422 and limit.headers["content-type"].startswith("application/problem+json")


def test_log_lines_of_a_request_carry_its_id(capsys):
    from api.request_id import RequestIdFilter, _current, tag_log_lines

    logger = logging.getLogger("test-contract-logs")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger.addHandler(handler)
    try:
        tag_log_lines(("test-contract-logs",))
        tag_log_lines(("test-contract-logs",))  # idempotent
        assert sum(isinstance(f, RequestIdFilter) for f in handler.filters) == 1
        logger.warning("outside a request")
        token = _current.set("req-42")
        try:
            logger.warning("inside a request")
        finally:
            _current.reset(token)
    finally:
        logger.removeHandler(handler)
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["WARNING outside a request", "WARNING inside a request [request_id=req-42]"]


class _Assets(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "script" and attributes.get("src"):
            self.urls.append(attributes["src"])
        if tag == "link" and attributes.get("href"):
            self.urls.append(attributes["href"])


@pytest.mark.lm
def test_docs_pages_load_every_asset_from_the_server(service):
    with service.client() as client:
        for page in ("/docs", "/redoc"):
            response = client.get(page)
            assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
            assert "://" not in response.text, f"{page} refers to another host"
            parser = _Assets()
            parser.feed(response.text)
            assert len(parser.urls) >= 2 if page == "/docs" else len(parser.urls) >= 1
            for url in parser.urls:
                assert url.startswith("/"), url
                asset = client.get(url)
                assert asset.status_code == 200 and len(asset.content) > 1000, url
        spec = client.get("/openapi.json")
        assert spec.status_code == 200 and spec.json()["paths"]


@pytest.mark.lm
def test_the_server_log_carries_the_request_id(service):
    mine = "log-" + uuid.uuid4().hex
    with service.client() as client:
        assert client.get("/healthz", headers={"X-Request-ID": mine}).headers["x-request-id"] == mine
        assert client.get("/v1/vendors", headers={"X-Request-ID": mine + "-401"}).status_code == 401
    logs = "".join(path.read_text() for path in service.tmp.glob("web-*.log"))
    assert "GET /healthz HTTP/1.1" in logs
    lines = [line for line in logs.splitlines() if f"[request_id={mine}]" in line]
    assert any("/healthz" in line for line in lines), logs[-2000:]
    assert any("/v1/vendors" in line and "401" in line for line in logs.splitlines() if mine + "-401" in line)
