"""Property-based run over the OpenAPI schema (schemathesis + hypothesis): whatever the
schema allows, the service answers without a 500."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

pytestmark = pytest.mark.lm


def test_no_server_errors_anywhere_in_the_schema(service):
    key = service.new_key("fuzzer")
    schema = schemathesis.openapi.from_url(f"{service.url}/openapi.json")
    failures = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case):
            response = case.call(base_url=service.url, headers={"X-API-Key": key}, timeout=120)
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path} {case.body!r:.200} -> {response.status_code}: {response.text[:300]}"
                )

        check()
    assert operations >= 9
    assert not failures, "\n".join(failures[:10])
