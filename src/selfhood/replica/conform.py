"""`selfhood replica conform URL`: does a running service speak the replica API? (IO)

An experiment on someone else's system (`selfhood run --runtime cluster
--system CMD`) is only as good as the service's answers: a service that
acknowledges a turn it never stored would be judged forgetful when it is
really broken. So before an experiment starts, this check talks to one
node of the service over HTTP and checks two things:

- form: every response validates against the OpenAPI document
  (selfhood/replica/replica-api.yaml, JSON Schema 2020-12), for the status code it came
  with, and a malformed request gets a documented 400;
- meaning: on a fresh instance, an appended turn is read back (in the same
  transaction and in a later one), a memory write and a case append are read
  back, an added rule is listed and a revoked one is not (not even after it
  is added again), `probe` and `GET /v1/instances/{id}/fingerprint` agree and
  change when the state does, and `final-read` shows the whole view.

Each failure is one `Finding` naming the endpoint (``POST /v1/ops f=txn``)
and what was wrong; the first failing probe of a chain stops the probes that
build on it.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from selfhood.errors import ReplicaError

#: the OpenAPI document: package data beside this module, so an installed selfhood has it
DEFAULT_DOC: Final = Path(__file__).resolve().parent / "replica-api.yaml"
#: errors that mean "not yet / try again" while a fresh instance gets an owner
RETRY_ERRORS: Final = frozenset({"unavailable", "not-owner"})
_HEX64: Final = re.compile(r"[0-9a-f]{64}")


class NotConformant(ReplicaError):
    """The service does not speak the replica API; the message names each endpoint (exit 1)."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One way the service departs from the protocol."""

    endpoint: str
    problem: str

    def __str__(self) -> str:
        return f"{self.endpoint}: {self.problem}"


@dataclass(frozen=True, slots=True)
class Report:
    """What the check did: how many exchanges were validated, and what failed."""

    url: str
    instance: str
    exchanges: int
    findings: tuple[Finding, ...]

    @property
    def ok(self) -> bool:
        return not self.findings

    def raise_for_findings(self) -> None:
        if self.findings:
            lines = "\n  ".join(str(f) for f in self.findings)
            raise NotConformant(f"{self.url} does not speak the replica API "
                                f"({len(self.findings)} problem(s)):\n  {lines}")


class _Stop(Exception):
    """A probe failed; the ones that build on it are skipped."""


def load_document(path: Path | None = None) -> dict[str, Any]:
    """The OpenAPI document (YAML); a ReplicaError says where it looked if it is missing."""
    import yaml

    doc = path or DEFAULT_DOC
    try:
        data = yaml.safe_load(doc.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ReplicaError(f"{doc}: cannot read the replica API document "
                           f"({exc.strerror or exc}); pass --openapi PATH") from None
    except yaml.YAMLError as exc:
        raise ReplicaError(f"{doc}: not YAML: {exc}") from None
    if not isinstance(data, dict) or "paths" not in data or "components" not in data:
        raise ReplicaError(f"{doc}: not an OpenAPI document (no paths/components)")
    return data


class _Schemas:
    """Validators for the document's response bodies, by (method, path template, status)."""

    def __init__(self, api: dict[str, Any]) -> None:
        self.api = api

    def _validator(self, pointer: str) -> Any:
        import jsonschema

        root = {"$schema": "https://json-schema.org/draft/2020-12/schema",
                "components": self.api["components"], "paths": self.api["paths"],
                "$ref": pointer}
        return jsonschema.Draft202012Validator(root)

    def problem(self, method: str, template: str, status: int, body: Any) -> str | None:
        """Why ``body`` (answered with ``status``) breaks the document, or None."""
        op = self.api["paths"].get(template, {}).get(method.lower())
        if op is None:
            return f"{method} {template} is not in the document"
        resp = op["responses"].get(str(status))
        if resp is None:
            return (f"answered HTTP {status}, which the document does not list "
                    f"(it lists {', '.join(op['responses'])}): {_short(body)}")
        ref = resp.get("$ref")
        parts = (ref.lstrip("#/").split("/") if ref
                 else ["paths", template, method.lower(), "responses", str(status)])
        pointer = "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in
                                  [*parts, "content", "application/json", "schema"])
        errors = sorted(self._validator(pointer).iter_errors(body), key=lambda e: list(e.path))
        if not errors:
            return None
        e = errors[0]
        where = "/".join(str(p) for p in e.absolute_path) or "(the body)"
        return f"response (HTTP {status}) breaks the document at {where}: {e.message}"


def _short(v: Any, n: int = 160) -> str:
    text = repr(v)
    return text if len(text) <= n else text[:n] + "..."


class _Probe:
    """The exchanges of one conformance check against one base URL."""

    def __init__(self, session: Any, url: str, schemas: _Schemas, instance: str,
                 timeout_s: float, settle_s: float) -> None:
        self.session = session
        self.base = url.rstrip("/")
        self.schemas = schemas
        self.inst = instance
        self.timeout_s = timeout_s
        self.settle_s = settle_s
        self.exchanges = 0
        self.findings: list[Finding] = []
        self.req = 0

    def fail(self, endpoint: str, problem: str) -> _Stop:
        self.findings.append(Finding(endpoint, problem))
        return _Stop()

    async def http(self, method: str, path: str, template: str, body: Any = None,
                   endpoint: str | None = None) -> tuple[int, Any]:
        import aiohttp

        name = endpoint or f"{method} {template}"
        try:
            async with asyncio.timeout(self.timeout_s):
                async with self.session.request(method, self.base + path, json=body) as resp:
                    raw = await resp.read()
                    status = resp.status
        except TimeoutError:
            raise self.fail(name, f"no answer within {self.timeout_s:g} s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise self.fail(name, f"cannot connect: {exc}") from None
        import json

        try:
            data = json.loads(raw)
        except ValueError:
            raise self.fail(name, f"HTTP {status} with a body that is not JSON: "
                                  f"{_short(raw[:200])}") from None
        self.exchanges += 1
        bad = self.schemas.problem(method, template, status, data)
        if bad is not None:
            raise self.fail(name, bad)
        return status, data

    async def op(self, f: str, value: Any, what: str, *, instance: str | None = None,
                 expect: str = "ok") -> Any:
        """POST /v1/ops; retries `unavailable`/`not-owner` while the instance gets an owner."""
        endpoint = f"POST /v1/ops f={f}"
        deadline = time.monotonic() + self.settle_s
        while True:
            self.req += 1
            body = {"req_id": self.req, "f": f, "value": value,
                    "instance": instance or self.inst, "token": None, "timeout_ms": 2000}
            status, res = await self.http("POST", "/v1/ops", "/v1/ops", body, endpoint)
            if status != 200:
                raise self.fail(endpoint, f"{what}: HTTP {status}: {_short(res)}")
            if res.get("req_id") != self.req:
                raise self.fail(endpoint, f"{what}: req_id {res.get('req_id')!r} does not "
                                          f"echo the request's {self.req}")
            if (res["type"] == "fail" and res.get("error") in RETRY_ERRORS
                    and time.monotonic() < deadline):
                await asyncio.sleep(0.2)
                continue
            if res["type"] != expect:
                raise self.fail(endpoint, f"{what}: expected {expect}, got {res['type']} "
                                          f"(error {res.get('error')!r})")
            return res["value"]

    async def run(self) -> None:
        for step in (self.health, self.status, self.bad_request, self.transcript,
                     self.memory, self.rules, self.identity):
            try:
                await step()
            except _Stop:
                if step in (self.health,):
                    return  # nothing else can work

    async def health(self) -> None:
        status, _ = await self.http("GET", "/v1/health", "/v1/health")
        if status != 200:
            raise self.fail("GET /v1/health", f"HTTP {status}")

    async def status(self) -> None:
        await self.http("GET", "/v1/status", "/v1/status")

    async def bad_request(self) -> None:
        endpoint = "POST /v1/ops (malformed request)"
        status, body = await self.http("POST", "/v1/ops", "/v1/ops",
                                       {"f": "no-such-op", "instance": self.inst}, endpoint)
        if status != 400:
            raise self.fail(endpoint, f"an op f='no-such-op' must be refused with HTTP 400, "
                                      f"got HTTP {status}: {_short(body)}")

    async def transcript(self) -> None:
        key = f"{self.inst}/transcript"
        got = await self.op("txn", [["append", key, 1], ["r", key, None]],
                            f"append 1 to {key} and read it")
        read = _read_of(got, key)
        if read != [1]:
            raise self.fail("POST /v1/ops f=txn", f"appended 1 to fresh {key}; the read in "
                                                  f"the same txn returned {_short(read)}, not [1]")
        await self.op("txn", [["append", key, 2]], f"append 2 to {key}")
        got = await self.op("txn", [["r", key, None]], f"read {key}")
        read = _read_of(got, key)
        if read != [1, 2]:
            raise self.fail("POST /v1/ops f=txn", f"appended 1 then 2 to {key}; a later read "
                                                  f"returned {_short(read)}, not [1, 2]")

    async def memory(self) -> None:
        tool, cases = f"{self.inst}/mem/tool/conform", f"{self.inst}/cases"
        await self.op("txn", [["w", tool, 7], ["append", cases, 3]],
                      f"write 7 to {tool} and append 3 to {cases}")
        got = await self.op("txn", [["r", tool, None], ["r", cases, None]],
                            f"read {tool} and {cases}")
        if _read_of(got, tool) != 7:
            raise self.fail("POST /v1/ops f=txn", f"wrote 7 to {tool}; a later read returned "
                                                  f"{_short(_read_of(got, tool))}")
        if _read_of(got, cases) != [3]:
            raise self.fail("POST /v1/ops f=txn", f"appended 3 to {cases}; a later read "
                                                  f"returned {_short(_read_of(got, cases))}")

    async def rules(self) -> None:
        await self.op("add-rule", 41, "add rule 41")
        await self.op("add-rule", 42, "add rule 42")
        rules = await self.op("read-rules", None, "read the rules")
        if not isinstance(rules, list) or 41 not in rules or 42 not in rules:
            raise self.fail("POST /v1/ops f=read-rules", f"added rules 41 and 42; read-rules "
                                                         f"returned {_short(rules)}")
        await self.op("revoke-rule", 41, "revoke rule 41")
        rules = await self.op("read-rules", None, "read the rules")
        if not isinstance(rules, list) or 41 in rules or 42 not in rules:
            raise self.fail("POST /v1/ops f=revoke-rule", f"revoked rule 41 (42 stays); "
                                                          f"read-rules returned {_short(rules)}")
        await self.op("add-rule", 41, "add the revoked rule 41 again")
        rules = await self.op("read-rules", None, "read the rules")
        if not isinstance(rules, list) or 41 in rules:
            raise self.fail("POST /v1/ops f=add-rule", f"a revoked rule never comes back, but "
                                                       f"after adding 41 again read-rules "
                                                       f"returned {_short(rules)}")

    async def fingerprint(self) -> dict[str, Any]:
        path = f"/v1/instances/{self.inst}/fingerprint"
        _, body = await self.http("GET", path, "/v1/instances/{instance}/fingerprint")
        if body.get("instance") != self.inst:
            raise self.fail("GET /v1/instances/{instance}/fingerprint",
                            f"asked for {self.inst!r}, answered for {body.get('instance')!r}")
        return dict(body)

    async def identity(self) -> None:
        ep = "POST /v1/ops f=probe"
        p1 = await self.op("probe", None, "probe")
        if not isinstance(p1, dict) or not _HEX64.fullmatch(str(p1.get("fingerprint"))):
            raise self.fail(ep, f"a probe's value must hold a sha256 hex fingerprint, got "
                                f"{_short(p1)}")
        fp = await self.fingerprint()
        if fp["fingerprint"] != p1["fingerprint"]:
            raise self.fail("GET /v1/instances/{instance}/fingerprint",
                            f"{fp['fingerprint'][:12]}... differs from the probe's "
                            f"{str(p1['fingerprint'])[:12]}... with no write in between")
        key = f"{self.inst}/transcript"
        await self.op("txn", [["append", key, 3]], f"append 3 to {key}")
        p2 = await self.op("probe", None, "probe")
        if not isinstance(p2, dict) or p2.get("fingerprint") == p1["fingerprint"]:
            raise self.fail(ep, f"appended a turn, but the fingerprint stayed "
                                f"{str(p1['fingerprint'])[:12]}...")
        fin = await self.op("final-read", None, "final read")
        ep = "POST /v1/ops f=final-read"
        if not isinstance(fin, dict):
            raise self.fail(ep, f"the value must be the instance's view (an object), got "
                                f"{_short(fin)}")
        want = {"transcript": [1, 2, 3], "cases": [3], "rules": [42],
                "fingerprint": p2.get("fingerprint")}
        for field, expected in want.items():
            if fin.get(field) != expected:
                raise self.fail(ep, f"`{field}` is {_short(fin.get(field))}, expected "
                                    f"{_short(expected)} after the probes' writes")


def _read_of(mops: Any, key: str) -> Any:
    """The value the last read of ``key`` returned in a txn result (micro-ops)."""
    found: Any = None
    if isinstance(mops, list):
        for m in mops:
            if isinstance(m, list) and len(m) == 3 and m[0] == "r" and m[1] == key:
                found = m[2]
    return found


async def check_service(url: str, *, document: Path | None = None, instance: str | None = None,
                        timeout_s: float = 5.0, settle_s: float = 30.0) -> Report:
    """Run every probe against the service at ``url``; the findings (empty: it conforms).

    ``instance`` defaults to a fresh name (``conform-<hex>``), so the probes'
    writes never touch an experiment's instances.
    """
    import aiohttp

    schemas = _Schemas(load_document(document))
    inst = instance or f"conform-{secrets.token_hex(4)}"
    async with aiohttp.ClientSession() as session:
        probe = _Probe(session, url, schemas, inst, timeout_s, settle_s)
        await probe.run()
    return Report(url, inst, probe.exchanges, tuple(probe.findings))
