"""The replica API contract for tests: the packaged replica-api.yaml, and a client that checks it.

`ApiClient` validates every request it sends and every response it gets
against the OpenAPI document (JSON Schema 2020-12, which OpenAPI 3.1
schemas are), so a test that talks to a real replica also proves the
server keeps to the documented API.
"""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import jsonschema
import yaml

from selfhood.replica.conform import DEFAULT_DOC as DOC_PATH

API: dict[str, Any] = yaml.safe_load(DOC_PATH.read_text(encoding="utf-8"))


def _pointer(*parts: str) -> str:
    return "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def _validator(pointer: str) -> jsonschema.Draft202012Validator:
    """A validator for the schema at ``pointer``, resolving refs inside the document."""
    root = {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": API["components"], "paths": API["paths"], "$ref": pointer}
    return jsonschema.Draft202012Validator(root)


def match_path(path: str) -> str:
    """The document's path template that ``path`` is an instance of."""
    for template in API["paths"]:
        rx = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(rx, path):
            return str(template)
    raise AssertionError(f"{path} is not a path of {DOC_PATH.name}")


def _ref_parts(obj: dict[str, Any]) -> tuple[str, ...]:
    """The pointer parts of a `$ref` to a component response (none if inline)."""
    ref = obj.get("$ref")
    return () if ref is None else tuple(ref.lstrip("#/").split("/"))


def validate_response(method: str, path: str, status: int, body: Any) -> None:
    template = match_path(path)
    op = API["paths"][template].get(method.lower())
    assert op is not None, f"{method} {template} is not in {DOC_PATH.name}"
    responses = op["responses"]
    assert str(status) in responses, (f"{method} {path} answered {status}, which "
                                      f"{DOC_PATH.name} does not document: {body!r}")
    parts = _ref_parts(responses[str(status)])
    if parts:
        pointer = _pointer(*parts, "content", "application/json", "schema")
    else:
        pointer = _pointer("paths", template, method.lower(), "responses", str(status),
                           "content", "application/json", "schema")
    _validator(pointer).validate(body)


def validate_request(method: str, path: str, body: Any) -> None:
    template = match_path(path)
    pointer = _pointer("paths", template, method.lower(), "requestBody", "content",
                       "application/json", "schema")
    _validator(pointer).validate(body)


class ApiClient:
    """Calls one replica; every exchange is checked against the document."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.session = session
        self.base = base_url.rstrip("/")
        self.checked = 0

    async def call(self, method: str, path: str, body: Any = None, *,
                   timeout_s: float = 10.0, check_request: bool = True) -> tuple[int, Any]:
        if body is not None and check_request:
            validate_request(method, path, body)
        async with self.session.request(
                method, self.base + path, json=body,
                timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
            assert resp.content_type == "application/json", (
                f"{method} {path}: content type {resp.content_type}")
            data = await resp.json()
            validate_response(method, path, resp.status, data)
            self.checked += 1
            return resp.status, data

    async def op(self, f: str, value: Any = None, instance: str | None = None, *,
                 token: dict[str, int] | None = None, timeout_ms: int = 2000,
                 req_id: Any = None) -> dict[str, Any]:
        body: dict[str, Any] = {"f": f, "value": value, "instance": instance,
                                "timeout_ms": timeout_ms}
        if token is not None:
            body["token"] = token
        if req_id is not None:
            body["req_id"] = req_id
        status, data = await self.call("POST", "/v1/ops", body,
                                       timeout_s=timeout_ms / 1000 + 5)
        assert status == 200, data
        result: dict[str, Any] = data
        return result

    async def status(self) -> dict[str, Any]:
        _, data = await self.call("GET", "/v1/status")
        result: dict[str, Any] = data
        return result

    async def health(self) -> dict[str, Any]:
        status, data = await self.call("GET", "/v1/health")
        assert status == 200, data
        result: dict[str, Any] = data
        return result
