"""Schemathesis over the core routes: no input makes a 5xx (R16) and every response matches the
OpenAPI document the server publishes (R17)."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)


@schemathesis.check
def wrong_body_is_rejected(ctx, response, case):
    """Schema-violating JSON bodies must be refused (R5). Query and path values are left out: on the wire
    `?tags=false` is the valid string "false" however the generator meant it."""
    meta = case.meta
    if meta is None:
        return None
    negative = {loc for loc, info in meta.components.items() if info.mode.is_negative}
    if negative and negative <= {"body"}:
        return negative_data_rejection(ctx, response, case)
    return None


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    wrong_body_is_rejected,
]


@pytest.fixture
def api_schema(server):
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_core_routes_answer_as_documented(case):
    case.call_and_validate(checks=CHECKS)
