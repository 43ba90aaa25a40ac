"""Property-based fuzzing of every operation in our own OpenAPI document (schemathesis).

Each operation runs as HQ, a regional manager, an inspector and anonymously against the seeded
demo organisation with records in both regions (tests/authz_world.py). HQ also gets the
coverage phase (every boundary and invalid value the schema implies); the other roles get
examples and fuzzing, which is where their scope and role checks differ.
"""

from __future__ import annotations

import zlib

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from tests.authz_world import PARAMS, document_app
from tests.conftest import ANA, HQ_EMAIL, NORTH

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
FUZZ = settings(
    max_examples=6, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck)
)
# HEIC photos go on the wire as opaque bytes, like any other binary body.
schemathesis.serializer.alias(["image/heic", "image/heif"], "application/octet-stream")


def _load(*phases: str):
    """Our OpenAPI document with the given generation phases."""
    loaded = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", document_app())
    # Each role signs in for real; generated or dropped bearer tokens would only test 401.
    loaded.config.generation.update(with_security_parameters=False)
    loaded.config.phases.update(phases=list(phases))
    return loaded


everything = _load("examples", "coverage", "fuzzing")
sampled = _load("examples", "fuzzing")


def _aim(case, world) -> None:
    """Point two in three valid cases at real records (North or South), past the 404s."""
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return
    for name, value in (case.path_parameters or {}).items():
        pick = zlib.crc32(repr(value).encode()) % 3
        if name in PARAMS and pick:
            side = world.north if pick == 1 else world.south
            case.path_parameters[name] = getattr(side, PARAMS[name])


def _call(case, app, world, email) -> None:
    _aim(case, world)
    case.call_and_validate(headers=world.headers(email), checks=CHECKS, app=app)


@everything.parametrize()
@FUZZ
def test_api_as_hq(case, app, world):
    """No 500s, only documented statuses, content types and bodies; invalid input refused."""
    _call(case, app, world, HQ_EMAIL)


@pytest.fixture(params=[NORTH, ANA, None], ids=["manager", "inspector", "anon"])
def email(request):
    """Who else sends the requests (None: nobody signed in)."""
    return request.param


@sampled.parametrize()
@FUZZ
def test_api_as_other_roles(case, app, world, email):
    """The same checks for the narrower roles and for anonymous callers."""
    _call(case, app, world, email)
