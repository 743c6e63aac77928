"""docs/openapi.json against a live coordinator, by schemathesis (its Python API, with
Hypothesis): with a token every answer conforms to the document and none is a 5xx; without one
every route answers 401 in the one error shape, but the public model endpoints (``"security":
[]``), which answer the same with or without one. Bounded: a few examples per operation."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from .conftest import LiveFactory, small_task
from .test_admin_api import _http, _token
from .test_api_threshold import strict_loads

ROOT = Path(__file__).resolve().parent.parent
DOCUMENT = json.loads((ROOT / "docs" / "openapi.json").read_text())
EXAMPLES = 12  # per operation and run: ~11 operations, two runs, well under a minute
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
#: Never ends by itself: checked by hand below, not by a generated call that would wait on it.
STREAM = ("GET", "/api/v1/stream")


def _operations() -> list[Any]:
    schema = schemathesis.openapi.from_dict(DOCUMENT)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == sum(
        len([m for m in i if m != "parameters"]) for i in DOCUMENT["paths"].values()
    )
    return operations


def _public(operation: Any) -> bool:
    """An operation that needs no token (``"security": []``: the public model endpoints)."""
    item = DOCUMENT["paths"][operation.path]
    return item[operation.method.lower()].get("security") == []


def _run(operation: Any, check: Callable[[Any], None]) -> int:
    """Draw cases of ``operation`` and ``check`` each; returns how many were checked."""
    done = 0
    # Valid inputs and, where the document allows any, invalid ones (a limit of 0, a version
    # of -1, a body of the wrong type): both must get a documented answer.
    modes = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
    strategy = st.one_of([operation.as_strategy(generation_mode=mode) for mode in modes])

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,  # the same cases on every run
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        nonlocal done
        check(case)
        done += 1

    run()
    return done


def _header(response: Any, name: str) -> str:
    """A header of a schemathesis Response (its names are lower case, values lists)."""
    values = response.headers.get(name.lower(), [""])
    return str(values[0])


def _error_validator() -> Draft202012Validator:
    return Draft202012Validator(DOCUMENT["components"]["schemas"]["Error"])


async def _server(live: LiveFactory) -> tuple[str, str]:
    server = await live()
    await server.coordinator.add_task(small_task())
    await server.coordinator.add_task(small_task("t2"))
    return _http(server), await _token(server)


async def test_with_a_token_every_answer_conforms_and_none_is_a_server_error(
    live: LiveFactory,
) -> None:
    base, token = await _server(live)
    auth = {"Authorization": f"Bearer {token}"}

    statuses: dict[str, list[int]] = {"positive": [], "negative": []}

    def check(case: Any) -> None:
        response = case.call(base_url=base, headers=auth, timeout=10)
        statuses[case.meta.generation.mode.value].append(response.status_code)
        case.validate_response(response, checks=CHECKS, headers=auth)
        if _header(response, "Content-Type").startswith("application/json"):
            strict_loads(response.content)

    checked = 0
    for operation in _operations():
        if (operation.method.upper(), operation.path) != STREAM:
            checked += await asyncio.to_thread(_run, operation, check)
    assert checked >= 10 * 5  # every operation ran, several cases each
    # Valid cases carry the token (invalid ones may break the header on purpose), and they
    # were answered, not only refused: real bodies were checked against the document.
    assert 401 not in statuses["positive"], statuses
    assert statuses["positive"].count(200) >= 10, statuses
    assert len(statuses["negative"]) >= 10, statuses
    async with (
        aiohttp.ClientSession(headers=auth) as http,
        http.get(base + STREAM[1]) as resp,
    ):
        assert resp.status == 200 and resp.content_type == "text/event-stream"
        first = await asyncio.wait_for(resp.content.readline(), 10)
        assert first == b"event: snapshot\n"


async def test_without_a_token_every_route_answers_401_in_the_one_shape(
    live: LiveFactory,
) -> None:
    base, _ = await _server(live)
    error = _error_validator()
    seen: dict[str, set[int]] = {}

    def check(case: Any) -> None:
        response = case.call(base_url=base, timeout=10)
        seen.setdefault(f"{case.method} {case.path}", set()).add(response.status_code)
        assert response.status_code == 401, (case.method, case.formatted_path, response.text)
        assert _header(response, "WWW-Authenticate").startswith("Bearer")
        body = strict_loads(response.content)
        error.validate(body)
        assert body["error"]["code"] == "unauthorized"

    protected = [op for op in _operations() if not _public(op)]
    for operation in protected:
        await asyncio.to_thread(_run, operation, check)
    assert len(seen) == len(protected) >= 10

    public_statuses: list[int] = []

    def check_public(case: Any) -> None:
        response = case.call(base_url=base, timeout=10)
        public_statuses.append(response.status_code)
        assert response.status_code != 401, (case.method, case.formatted_path)
        case.validate_response(response, checks=CHECKS)

    public = [op for op in _operations() if _public(op)]
    for operation in public:
        await asyncio.to_thread(_run, operation, check_public)
    assert len(public) == 2 and len(public_statuses) >= 2 * 5
