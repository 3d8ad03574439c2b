"""The key grammar of the instance model: the one place that builds and parses keys (pure).

Client transactions name what they touch with string keys, namespaced by
instance so that a transaction never crosses instances:

- ``<instance>/transcript``: the conversation turns, a list (append-only);
- ``<instance>/cases``: the case bank, a list (append-only);
- ``<instance>/mem/<module>/<name>``: a memory record, a register, where
  ``<module>`` is ``subtask`` or ``tool``.

The workloads build keys with these functions, the replica core parses them,
and the runner and checkers classify them; none of them splits a key itself.
"""

from __future__ import annotations

from typing import Final, Literal

from selfhood.errors import ConsistencyError

KeyKind = Literal["transcript", "cases", "subtask", "tool"]
#: list-append keys (the rest are registers)
LIST_KINDS: Final = ("transcript", "cases")
#: memory modules that hold registers
REGISTER_MODULES: Final = ("subtask", "tool")
_MEM: Final = "mem/"


def transcript_key(instance: str) -> str:
    return f"{instance}/transcript"


def cases_key(instance: str) -> str:
    return f"{instance}/cases"


def mem_key(instance: str, module: str, name: str) -> str:
    """``<instance>/mem/<module>/<name>``; ``module/name`` is the final read's memory key."""
    return f"{instance}/mem/{module}/{name}"


def parse_key(key: str) -> tuple[str, KeyKind, str | None]:
    """``i/transcript`` | ``i/cases`` | ``i/mem/<module>/<name>`` -> (instance, kind, name).

    Raises `ConsistencyError` naming the key when it is not in the grammar.
    """
    inst, _, rest = key.partition("/")
    if inst:
        if rest == "transcript":
            return inst, "transcript", None
        if rest == "cases":
            return inst, "cases", None
        if rest.startswith(_MEM):
            module, _, name = rest[len(_MEM):].partition("/")
            if name:
                if module == "subtask":
                    return inst, "subtask", name
                if module == "tool":
                    return inst, "tool", name
    raise ConsistencyError(f"unknown key {key!r}: expected <instance>/transcript, "
                           "<instance>/cases or <instance>/mem/(subtask|tool)/<name>")


def try_parse_key(key: object) -> tuple[str, KeyKind, str | None] | None:
    """`parse_key`, or None for anything that is not a key (checkers read foreign histories)."""
    if not isinstance(key, str):
        return None
    try:
        return parse_key(key)
    except ConsistencyError:
        return None


def instance_of(key: str) -> str:
    """The instance a key belongs to (keys never cross instances)."""
    return key.partition("/")[0]


def is_list_key(key: object) -> bool:
    """A list-append key (transcript or case bank)."""
    k = try_parse_key(key)
    return k is not None and k[1] in LIST_KINDS


def is_transcript_key(key: object) -> bool:
    k = try_parse_key(key)
    return k is not None and k[1] == "transcript"


def is_memory_key(key: object, module: str | None = None) -> bool:
    """A memory-record (register) key, of ``module`` when one is given."""
    k = try_parse_key(key)
    return k is not None and k[2] is not None and (module is None or k[1] == module)
