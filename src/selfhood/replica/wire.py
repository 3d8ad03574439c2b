"""The replica API's JSON bodies <-> the core's messages (pure).

replica-api.yaml (beside this module) is the contract; this module is its
one reader and writer on the replica side. A malformed body raises
`BadRequest` naming the field, which the server answers with HTTP 400.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from selfhood.consistency.replica import Reply, Token

#: operations the core serves (POST /v1/ops `f`)
OPS: Final = ("txn", "add-rule", "revoke-rule", "read-rules", "probe", "final-read")
DEFAULT_TIMEOUT_MS: Final = 1000
MAX_TIMEOUT_MS: Final = 600_000
MAX_HOPS: Final = 1


class BadRequest(ValueError):
    """A request body that does not follow the API; the message names the field."""


@dataclass(frozen=True, slots=True)
class OpBody:
    """One client operation as it arrives (POST /v1/ops, POST /v1/forward)."""

    req_id: Any
    f: str
    value: Any
    instance: str | None
    token: Token | None
    timeout_ms: int
    origin: str | None = None
    hops: int = 0


def read_only(f: str, value: Any) -> bool:
    """An op that cannot write: a timeout means certainly no effect (fail, not info)."""
    if f in ("read-rules", "probe", "final-read"):
        return True
    if f == "txn" and isinstance(value, list):
        return all(isinstance(m, list) and m and m[0] == "r" for m in value)
    return False


def parse_token(raw: Any, field: str = "token") -> Token | None:
    """``{"<partition>": offset}`` (JSON keys are strings) -> {partition: offset}."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise BadRequest(f"{field}: expected an object {{partition: offset}}, got {raw!r}")
    out: Token = {}
    for k, v in raw.items():
        try:
            p = int(k)
        except (TypeError, ValueError):
            raise BadRequest(f"{field}: partition {k!r} is not an integer") from None
        if p < 0 or isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise BadRequest(f"{field}.{k}: offset {v!r} must be an integer >= 0")
        out[p] = v
    return out


def dump_token(token: Token | None) -> dict[str, int] | None:
    return None if token is None else {str(p): int(o) for p, o in sorted(token.items())}


def parse_op(body: Any, *, forwarded: bool = False) -> OpBody:
    """Validate a POST /v1/ops (or /v1/forward) body."""
    if not isinstance(body, dict):
        raise BadRequest("body: expected a JSON object")
    allowed = {"req_id", "f", "value", "instance", "token", "timeout_ms"}
    if forwarded:
        allowed |= {"from", "hops"}
    for k in body:
        if k not in allowed:
            raise BadRequest(f"{k}: unknown field (expected {', '.join(sorted(allowed))})")
    f = body.get("f")
    if f not in OPS:
        raise BadRequest(f"f: {f!r} is not one of {', '.join(OPS)}")
    req_id = body.get("req_id")
    if req_id is not None and (isinstance(req_id, bool)
                               or not isinstance(req_id, int | str)):
        raise BadRequest(f"req_id: expected an integer or string, got {req_id!r}")
    inst = body.get("instance")
    if inst is not None and (not isinstance(inst, str) or not inst or "/" in inst):
        raise BadRequest(f"instance: expected a non-empty name without '/', got {inst!r}")
    value = body.get("value")
    if f == "txn":
        _check_txn(value)
    timeout = body.get("timeout_ms", DEFAULT_TIMEOUT_MS)
    if isinstance(timeout, bool) or not isinstance(timeout, int) \
            or not 1 <= timeout <= MAX_TIMEOUT_MS:
        raise BadRequest(f"timeout_ms: {timeout!r} must be an integer in 1..{MAX_TIMEOUT_MS}")
    origin: str | None = None
    hops = 0
    if forwarded:
        origin = body.get("from")
        if not isinstance(origin, str) or not origin:
            raise BadRequest(f"from: expected the forwarding replica's name, got {origin!r}")
        hops = body.get("hops", 1)
        if isinstance(hops, bool) or not isinstance(hops, int) or not 1 <= hops <= MAX_HOPS:
            raise BadRequest(f"hops: {hops!r} must be an integer in 1..{MAX_HOPS}")
    return OpBody(req_id, f, value, inst, parse_token(body.get("token")), timeout,
                  origin, hops)


def _check_txn(value: Any) -> None:
    if not isinstance(value, list) or not value:
        raise BadRequest("value: a txn is a non-empty list of [f, key, value] micro-ops")
    for i, m in enumerate(value):
        if not isinstance(m, list) or len(m) != 3 or m[0] not in ("r", "w", "append") \
                or not isinstance(m[1], str):
            raise BadRequest(f"value.{i}: {m!r} is not [\"r\"|\"w\"|\"append\", key, value]")


def forward_body(op: OpBody, origin: str, timeout_ms: int) -> dict[str, Any]:
    """What a replica POSTs to the owner's /v1/forward."""
    return {"req_id": op.req_id, "f": op.f, "value": op.value, "instance": op.instance,
            "token": dump_token(op.token), "timeout_ms": max(1, timeout_ms),
            "from": origin, "hops": op.hops + 1}


def reply_body(req_id: Any, reply: Reply, replica: str) -> dict[str, Any]:
    """The OpResult document for a core Reply."""
    return {"req_id": req_id, "type": reply.type,
            "value": reply.value if reply.type == "ok" else None,
            "error": None if reply.error is None else str(reply.error),
            "token": dump_token(reply.token), "extra": reply.extra or None,
            "replica": replica}


def parse_reply(body: Any, req_id: int) -> Reply:
    """A peer's OpResult (the owner's answer to a forward) -> a core Reply."""
    if not isinstance(body, dict) or body.get("type") not in ("ok", "fail", "info"):
        raise BadRequest(f"reply: expected an OpResult, got {body!r}")
    extra = body.get("extra")
    return Reply(req_id, body["type"], body.get("value"), body.get("error"),
                 parse_token(body.get("token"), "reply.token"),
                 extra if isinstance(extra, dict) else None)
