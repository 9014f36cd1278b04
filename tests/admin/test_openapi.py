"""The admin API against its own OpenAPI description, with schemathesis against the real
server (`syncctl admin serve`) over real PostgreSQL: for requests the description allows and
for ones it does not, never a 5xx, every answer's status, type and body as described, every
malformed request refused with a counted 4xx."""

from __future__ import annotations

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    allow_header_conformance,
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from sync_pipeline.admin.app import openapi_schema
from tests.admin.conftest import BEARER

pytestmark = pytest.mark.slow

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,  # what the description forbids is refused
    ignored_auth,  # without the token, 401
    allow_header_conformance,  # a 405 names the methods the path takes
]


# The description the server serves (checked equal below), loaded without a server so
# that each operation is a test of its own.
schema = schemathesis.openapi.from_dict(openapi_schema())
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
    max_examples=30,
    with_security_parameters=False,  # the token is ours to send; ignored_auth drops it
)


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_every_answer_conforms_and_none_is_a_server_error(case, served) -> None:
    case.call_and_validate(base_url=served, headers=BEARER, checks=CHECKS)


def test_the_description_served_is_the_one_written_from_the_routes(served) -> None:
    answer = requests.get(f"{served}/openapi.json", headers=BEARER, timeout=5)

    assert answer.json() == openapi_schema()
    assert answer.json()["openapi"].startswith("3.")
    assert set(answer.json()["paths"]) >= {"/flows", "/flows/{flow}/runs", "/dead-letters"}
