"""Building frozen, slotted dataclass values fast (pure).

The simulator builds several frozen dataclass values per simulated op (history
ops, generator contexts and requests). A frozen dataclass's ``__init__`` sets
each field through ``object.__setattr__``, the slowest way to fill a slot;
`slot_maker` gives a class a plain function that builds the same object in
about a third of the time, for the few places that build them by the thousand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from types import MemberDescriptorType
from typing import Any, TypeVar, cast

_T = TypeVar("_T")


def plain_slots(cls: type) -> tuple[str, ...] | None:
    """The field names of ``cls`` if each is a plain slot and nothing runs after
    ``__init__`` (no ``__post_init__``); else None (build it the ordinary way)."""
    names = tuple(f.name for f in fields(cls))
    if hasattr(cls, "__post_init__") or not all(
            isinstance(cls.__dict__.get(n), MemberDescriptorType) for n in names):
        return None
    return names


def slot_maker(cls: type[_T]) -> Callable[..., _T]:
    """A constructor of ``cls`` taking every field (also ``init=False`` ones) by position.

    It fills the slots of a blank object of a mutable twin class (the same
    slots, no frozen ``__setattr__``) and then makes it a ``cls``: the very
    object ``cls(...)`` builds, without a call per field. Fields are taken as
    given (no defaults, no checks). A class whose layout does not allow that
    is built through its slot descriptors instead, one call per field; a class
    of other fields (compiled), by itself.
    """
    names = plain_slots(cls)
    if names is None:
        # e.g. a class compiled by mypyc (its fields are no member descriptors), which
        # builds fast anyway: its own constructor, if that takes every field
        if not all(f.init for f in fields(cast(Any, cls))):  # pragma: no cover - none today
            raise TypeError(f"{cls.__name__}: not a dataclass of plain slots")
        return cls
    twin = type(f"_{cls.__name__}Blank", (), {"__slots__": cls.__dict__["__slots__"]})
    ns: dict[str, Any] = {"_new": object.__new__, "_twin": twin, "_cls": cls}
    args = ", ".join(names)
    body = "".join(f"    v.{n} = {n}\n" for n in names)
    src = f"def make({args}):\n    v = _new(_twin)\n{body}    v.__class__ = _cls\n    return v\n"
    exec(src, ns)  # the technique dataclasses itself uses to write __init__
    make: Callable[..., _T] = ns["make"]
    try:
        make(*names)
    except TypeError:  # pragma: no cover - a layout __class__ assignment refuses
        setters = {f"_s_{n}": cls.__dict__[n].__set__ for n in names}
        ns.update(setters)
        body = "".join(f"    _s_{n}(v, {n})\n" for n in names)
        exec(f"def make({args}):\n    v = _new(_cls)\n{body}    return v\n", ns)
        make = ns["make"]
    make.__qualname__ = make.__name__ = f"make_{cls.__name__}"
    return make
