"""Building frozen, slotted dataclass values fast (pure).

The simulator builds several frozen dataclass values per simulated op (history
ops, generator contexts and requests). A frozen dataclass's ``__init__`` sets
each field through ``object.__setattr__``, the slowest way to fill a slot.
This is the one home of the two faster ways, both written by `_define`:

- `slot_init` gives a class an ``__init__`` that sets its slots through their
  descriptors (same signature, same defaults): about half the time, for every
  ``Cls(...)`` call;
- `slot_maker` gives a class a plain function taking every field by position
  that fills a mutable twin and sets ``__class__``: about a third of the time,
  for the few places that build them by the thousand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import MISSING, fields
from types import MemberDescriptorType
from typing import Any, TypeVar, cast

_T = TypeVar("_T")
_C = TypeVar("_C", bound=type)


def plain_slots(cls: type) -> tuple[str, ...] | None:
    """The field names of ``cls`` if each is a plain slot and nothing runs after
    ``__init__`` (no ``__post_init__``); else None (build it the ordinary way)."""
    names = tuple(f.name for f in fields(cls))
    if hasattr(cls, "__post_init__") or not all(
            isinstance(cls.__dict__.get(n), MemberDescriptorType) for n in names):
        return None
    return names


def _define(name: str, params: Iterable[str], lines: Iterable[str], ns: dict[str, Any],
            qualname: str) -> Callable[..., Any]:
    """The function ``def name(params): lines``, its globals ``ns``.

    Written as source and run, the technique dataclasses itself uses to write
    ``__init__``: the body is straight-line code, a call or store per field and
    no loop, which is what makes these constructors fast.
    """
    body = "".join(f"    {line}\n" for line in lines) or "    pass\n"
    exec(f"def {name}({', '.join(params)}):\n{body}", ns)
    fn: Callable[..., Any] = ns[name]
    fn.__name__, fn.__qualname__ = name, qualname
    return fn


def _descriptor_sets(cls: type, target: str, values: dict[str, str],
                     ns: dict[str, Any]) -> list[str]:
    """Lines setting each slot of ``target`` (a ``cls``) to its value expression
    through the slot's descriptor, the setters bound into ``ns``."""
    lines = []
    for n, v in values.items():
        ns[f"_s_{n}"] = cls.__dict__[n].__set__
        lines.append(f"_s_{n}({target}, {v})")
    return lines


def slot_init(cls: _C) -> _C:
    """Give a frozen, slotted dataclass an ``__init__`` that fills its slots directly.

    Setting the slots through their descriptors makes the same object (same
    class, same fields, same defaults, same signature) as the dataclass's own
    ``__init__`` in about half the time. A class this does not fit (a
    ``__post_init__``, a default factory, keyword-only fields, a field that is
    not a plain slot, e.g. a class compiled by mypyc) keeps its own ``__init__``.
    """
    fs = fields(cls)
    if plain_slots(cls) is None or any(
            f.default_factory is not MISSING or f.kw_only is True for f in fs):
        return cls  # pragma: no cover - no such class is decorated today
    ns: dict[str, Any] = {}
    params = ["self"]
    values: dict[str, str] = {}
    for f in fs:
        if f.default is not MISSING:
            ns[f"_d_{f.name}"] = f.default
        if f.init:
            params.append(f.name if f.default is MISSING else f"{f.name}=_d_{f.name}")
            values[f.name] = f.name
        else:
            values[f.name] = f"_d_{f.name}"
    lines = _descriptor_sets(cls, "self", values, ns)
    cls.__init__ = _define(  # type: ignore[misc]
        "__init__", params, lines, ns, f"{cls.__qualname__}.__init__")
    return cls


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
    name = f"make_{cls.__name__}"
    lines = ["v = _new(_twin)", *(f"v.{n} = {n}" for n in names), "v.__class__ = _cls",
             "return v"]
    make = _define(name, names, lines, ns, name)
    try:
        make(*names)
    except TypeError:  # pragma: no cover - a layout __class__ assignment refuses
        lines = ["v = _new(_cls)", *_descriptor_sets(cls, "v", {n: n for n in names}, ns),
                 "return v"]
        make = _define(name, names, lines, ns, name)
    return make
