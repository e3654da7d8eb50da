"""`dataclass`, as the standard library's, made in a fraction of the time.

Python 3.11 compiles every generated method of a dataclass from source, one `exec` each: a
frozen record takes ~1.5 ms to define, and the ~60 dataclasses a one-key `apply` imports took
~70 ms of it (the whole command is ~0.4 s). Here the standard `dataclass` still collects the
fields (inheritance, defaults, `field()`: `fields()`, `replace()` and `asdict()` work as
always), with no method generated; `__init__` is then compiled in one `exec` and the other
methods are closures over the field names: ~0.45 ms a class.

Supported: what gitconf uses, `@dataclass` and `@dataclass(frozen=True)` or `(eq=False)`, with
defaults, `field(default_factory=..., repr=False, compare=False, init=False)`,
`__post_init__` and inheritance. Anything else is handed to the standard `dataclass`.
Type checkers see the standard one. `tests/unit/test_fastclass.py` holds the two to the same
behaviour (signature, repr, equality, hashing, frozenness, `replace`, `asdict`, match args).
"""

from __future__ import annotations

import dataclasses
import inspect
import reprlib
from collections.abc import Callable
from operator import attrgetter
from typing import TYPE_CHECKING, Any

__all__ = ["dataclass"]

_FROZEN = "__gitconf_frozen__"


def _dataclass(cls: type | None = None, /, *, frozen: bool = False, eq: bool = True,
               **other: Any) -> Any:
    if other:  # options gitconf does not use: the standard library's
        return dataclasses.dataclass(cls, frozen=frozen, eq=eq, **other)

    def wrap(c: type) -> type:
        return _process(c, frozen, eq)

    return wrap if cls is None else wrap(cls)


def _process(cls: type, frozen: bool, eq: bool) -> type:
    for base in cls.__mro__[1:]:
        if "__dataclass_fields__" in base.__dict__ and \
                getattr(base, _FROZEN, frozen) != frozen:
            raise TypeError("cannot inherit frozen dataclass from a non-frozen one" if frozen
                            else "cannot inherit non-frozen dataclass from a frozen one")
    # the standard library's rule: a `__hash__` the class sets, except the None that Python
    # puts there for a class that defines `__eq__`
    own = cls.__dict__.get("__hash__", dataclasses.MISSING)
    own_hash = not (own is dataclasses.MISSING or (own is None and "__eq__" in cls.__dict__))
    undocumented = not cls.__doc__
    if undocumented:  # the standard library would sign `object.__init__`: parsing its text
        cls.__doc__ = "-"  # signature compiles tokenize's patterns, ~7 ms once a process
    dataclasses.dataclass(cls, init=False, repr=False, eq=False, match_args=False)
    fields = dataclasses.fields(cls)
    pseudo = [f for f in cls.__dataclass_fields__.values()  # type: ignore[attr-defined]
              if f._field_type is not dataclasses._FIELD]  # type: ignore[attr-defined]
    if any(f.kw_only for f in fields) or any(
            f._field_type is dataclasses._FIELD_INITVAR for f in pseudo):  # type: ignore
        raise TypeError(f"{cls.__qualname__}: keyword-only or InitVar fields need "
                        "dataclasses.dataclass")
    setattr(cls, _FROZEN, frozen)
    _set(cls, "__init__", _init(cls, fields, frozen))
    _set(cls, "__repr__", _repr(cls, [f.name for f in fields if f.repr]))
    if eq:
        names = [f.name for f in fields if f.compare]
        _set(cls, "__eq__", _eq(_getter(names)))
        if not own_hash:
            hashed = [f.name for f in fields
                      if (f.compare if f.hash is None else f.hash)]
            cls.__hash__ = _hash(_getter(hashed)) if frozen else None  # type: ignore
    if frozen:
        _set(cls, "__setattr__", _frozen_setattr(cls, {f.name for f in fields}))
        _set(cls, "__delattr__", _frozen_delattr(cls, {f.name for f in fields}))
    if "__match_args__" not in cls.__dict__:
        cls.__match_args__ = tuple(f.name for f in fields if f.init)  # type: ignore
    if undocumented:  # as the standard library words it, from the `__init__` made here
        cls.__doc__ = cls.__name__ + str(inspect.signature(cls)).replace(" -> None", "")
    return cls


def _set(cls: type, name: str, fn: Callable[..., Any]) -> None:
    """Like the standard library: a method the class defines itself is kept."""
    if name in cls.__dict__:
        return
    fn.__qualname__ = f"{cls.__qualname__}.{name}"
    fn.__name__ = name
    setattr(cls, name, fn)


def _init(cls: type, fields: tuple[dataclasses.Field[Any], ...],
          frozen: bool) -> Callable[..., None]:
    """`__init__` from one `exec`: positional-or-keyword parameters in field order, defaults
    as given (a factory's as the standard library's sentinel), then `__post_init__`."""
    glob: dict[str, Any] = {"__object_setattr": object.__setattr__,
                            "__factory": dataclasses._HAS_DEFAULT_FACTORY}  # type: ignore
    params, body = [], []
    seen_default = False
    for f in fields:
        if f.init:  # the standard library's check, before it compiles
            if f.default is not dataclasses.MISSING or \
                    f.default_factory is not dataclasses.MISSING:
                seen_default = True
            elif seen_default:
                raise TypeError(f"non-default argument {f.name!r} follows default argument")
        glob[f"__dflt_{f.name}"] = f.default
        glob[f"__fact_{f.name}"] = f.default_factory
        has_default = f.default is not dataclasses.MISSING
        has_factory = f.default_factory is not dataclasses.MISSING
        if f.init:
            default = (" = __factory" if has_factory else
                       f" = __dflt_{f.name}" if has_default else "")
            params.append(f"{f.name}{default}")
            value = (f"__fact_{f.name}() if {f.name} is __factory else {f.name}"
                     if has_factory else f.name)
        elif has_factory:
            value = f"__fact_{f.name}()"
        elif has_default:
            value = f"__dflt_{f.name}"
        else:
            continue
        body.append(f"__object_setattr(self, {f.name!r}, {value})" if frozen
                    else f"self.{f.name} = {value}")
    if hasattr(cls, "__post_init__"):
        body.append("self.__post_init__()")
    src = (f"def __init__(self, {', '.join(params)}):\n"
           + "".join(f"    {line}\n" for line in body or ["pass"]))
    ns: dict[str, Any] = {}
    exec(src, glob, ns)  # source built here from field names, as the standard library does
    init: Callable[..., None] = ns["__init__"]
    init.__annotations__ = {f.name: f.type for f in fields if f.init} | {"return": None}
    return init


def _getter(names: list[str]) -> Callable[[Any], tuple[Any, ...]]:
    """The values of `names`, always as a tuple (the standard methods compare tuples)."""
    if not names:
        return lambda obj: ()
    get = attrgetter(*names)
    if len(names) == 1:
        return lambda obj: (get(obj),)
    return get


def _repr(cls: type, names: list[str]) -> Callable[[Any], str]:
    get = _getter(names)

    @reprlib.recursive_repr()
    def __repr__(self: Any) -> str:
        shown = ", ".join(f"{n}={v!r}" for n, v in zip(names, get(self), strict=True))
        return f"{self.__class__.__qualname__}({shown})"

    return __repr__


def _eq(get: Callable[[Any], tuple[Any, ...]]) -> Callable[[Any, Any], Any]:
    def __eq__(self: Any, other: Any) -> Any:
        if other.__class__ is self.__class__:
            return get(self) == get(other)
        return NotImplemented

    return __eq__


def _hash(get: Callable[[Any], tuple[Any, ...]]) -> Callable[[Any], int]:
    def __hash__(self: Any) -> int:
        return hash(get(self))

    return __hash__


def _frozen_setattr(cls: type, names: set[str]) -> Callable[[Any, str, Any], None]:
    def __setattr__(self: Any, name: str, value: Any) -> None:
        if type(self) is cls or name in names:
            raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")
        super(_any(cls), self).__setattr__(name, value)

    return __setattr__


def _frozen_delattr(cls: type, names: set[str]) -> Callable[[Any, str], None]:
    def __delattr__(self: Any, name: str) -> None:
        if type(self) is cls or name in names:
            raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")
        super(_any(cls), self).__delattr__(name)

    return __delattr__


def _any(cls: type) -> Any:
    return cls


if TYPE_CHECKING:
    from dataclasses import dataclass as dataclass
else:
    dataclass = _dataclass
