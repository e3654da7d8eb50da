"""`dataclass`, as the standard library's, made in a fraction of the time.

Python 3.11 compiles every generated method of a dataclass from source, one `exec` each, and
matches every string annotation against a pattern three times (ClassVar, InitVar, KW_ONLY): a
frozen record took ~1.5 ms to define, and the ~60 dataclasses a one-key `apply` imports took
~70 ms of it (the whole command is ~0.4 s). Here the fields are collected as the standard
library collects them (one match an annotation; `fields()`, `replace()` and `asdict()` work as
always), `__init__` is compiled the first time the class is called (a pass makes instances of
fewer than half of its classes) and the other methods are closures over the field names.

Supported: what gitconf uses, `@dataclass` and `@dataclass(frozen=True)` or `(eq=False)`, with
defaults, ClassVars, `field(default_factory=..., repr=False, compare=False, init=False)`,
`__post_init__` and inheritance. Anything else, and Python other than 3.11 (whose internals
the collection mirrors), is handed to the standard `dataclass`. Type checkers see the standard
one. `tests/unit/test_fastclass.py` holds the two to the same behaviour (signature, docstring,
repr, equality, hashing, frozenness, `replace`, `asdict`, match args).
"""

from __future__ import annotations

import abc
import dataclasses
import reprlib
import sys
import types
import typing
from collections.abc import Callable
from keyword import iskeyword
from operator import attrgetter
from typing import TYPE_CHECKING, Any

__all__ = ["dataclass"]

_FROZEN = "__gitconf_frozen__"  # marks a class made here (bases are checked by their params)
_D: Any = dataclasses  # the standard library's internals, as its own `_process_class` uses them
_MIRRORED = sys.version_info[:2] == (3, 11)


def _dataclass(cls: type | None = None, /, *, frozen: bool = False, eq: bool = True,
               **other: Any) -> Any:
    if other:  # options gitconf does not use: the standard library's
        return dataclasses.dataclass(cls, frozen=frozen, eq=eq, **other)

    def wrap(c: type) -> type:
        return _process(c, frozen, eq)

    return wrap if cls is None else wrap(cls)


def _process(cls: type, frozen: bool, eq: bool) -> type:
    # the standard library's rule: a `__hash__` the class sets, except the None that Python
    # puts there for a class that defines `__eq__`
    own = cls.__dict__.get("__hash__", dataclasses.MISSING)
    own_hash = not (own is dataclasses.MISSING or (own is None and "__eq__" in cls.__dict__))
    undocumented = not cls.__doc__
    fields = _collect(cls, frozen) if _MIRRORED else None
    if fields is None:
        fields = _collect_std(cls, frozen)
    if _MIRRORED:  # what the class gets, as the standard library records it for its bases' checks
        setattr(cls, _D._PARAMS, _D._DataclassParams(True, True, eq, False, False, frozen))
    setattr(cls, _FROZEN, frozen)
    _order_defaults(fields)
    made_init = _set(cls, "__init__", _lazy_init(cls, fields, frozen,
                                                 hasattr(cls, "__post_init__")))
    if made_init:
        cls.__signature__ = _SIGNATURE  # type: ignore[attr-defined]
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
    if undocumented:  # the standard library's: the class's name and `__init__`'s signature
        cls.__doc__ = cls.__name__ + _text_signature(cls, fields, made_init)
    abc.update_abstractmethods(cls)  # as the standard library ends: generated methods count
    return cls


# -- the fields ------------------------------------------------------------------------------

_CLASSVAR, _OTHER = "classvar", "other"


def _collect(cls: type, frozen: bool) -> tuple[dataclasses.Field[Any], ...] | None:
    """The standard library's `_process_class` with every method left out (init, repr and eq
    False): the fields of the bases and of the class, the defaults set as class attributes,
    its checks. None for a shape it leaves to the standard library (InitVar, KW_ONLY, a
    class whose module is not loaded)."""
    module = sys.modules.get(cls.__module__)
    if module is None:
        return None
    annotations = cls.__dict__.get("__annotations__", {})  # noqa: RUF063  (the class's own)
    kinds = {name: _kind(a_type, module) for name, a_type in annotations.items()}
    if _OTHER in kinds.values():
        return None
    fields: dict[str, dataclasses.Field[Any]] = {}
    bases = frozen_base = False
    for base in cls.__mro__[-1:0:-1]:
        base_fields = getattr(base, _D._FIELDS, None)
        if base_fields is not None:
            bases = True
            fields.update((f.name, f) for f in base_fields.values())
            frozen_base |= getattr(base, _D._PARAMS).frozen
    if any(f._field_type is _D._FIELD_INITVAR or (f._field_type is _D._FIELD  # type: ignore
                                                  and f.kw_only is True)
           for f in fields.values()):
        return None  # a base the standard library made with an InitVar or keyword-only field
    if bases and frozen_base != frozen:
        raise TypeError("cannot inherit non-frozen dataclass from a frozen one" if frozen_base
                        else "cannot inherit frozen dataclass from a non-frozen one")
    own = [_field(cls, name, annotations[name], kind) for name, kind in kinds.items()]
    for f in own:
        fields[f.name] = f
        if isinstance(getattr(cls, f.name, None), dataclasses.Field):
            if f.default is dataclasses.MISSING:
                delattr(cls, f.name)
            else:
                setattr(cls, f.name, f.default)
    for name, value in cls.__dict__.items():
        if isinstance(value, dataclasses.Field) and name not in annotations:
            raise TypeError(f"{name!r} is a field but has no type annotation")
    setattr(cls, _D._FIELDS, fields)
    return tuple(f for f in fields.values() if f._field_type is _D._FIELD)  # type: ignore


def _kind(a_type: Any, module: types.ModuleType) -> str | None:
    """`_CLASSVAR`, `_OTHER` (InitVar or KW_ONLY) or None (a field), decided as the standard
    library decides it, with one match of a string annotation where it makes three."""
    if a_type is dataclasses.KW_ONLY or _D._is_initvar(a_type, dataclasses):
        return _OTHER
    if _D._is_classvar(a_type, typing):
        return _CLASSVAR
    if not isinstance(a_type, str):
        return None
    match = _D._MODULE_IDENTIFIER_RE.match(a_type)
    if match is None:
        return None
    prefix, name = match.groups()

    def named(a_module: types.ModuleType) -> Any:
        if not prefix:
            return module.__dict__.get(name)
        if module.__dict__.get(prefix) is a_module:
            return a_module.__dict__.get(name)
        return None

    found = named(dataclasses)
    if found is dataclasses.KW_ONLY or _D._is_initvar(found, dataclasses):
        return _OTHER
    return _CLASSVAR if _D._is_classvar(named(typing), typing) else None


def _field(cls: type, name: str, a_type: Any, kind: str | None) -> dataclasses.Field[Any]:
    """The standard library's `_get_field` for a field or a ClassVar."""
    default: Any = getattr(cls, name, dataclasses.MISSING)
    if isinstance(default, dataclasses.Field):
        f = default
    else:
        if isinstance(default, types.MemberDescriptorType):  # a slot: no default
            default = dataclasses.MISSING
        f = dataclasses.field(default=default)
    f.name, f.type = name, a_type
    if kind == _CLASSVAR:
        f._field_type = _D._FIELD_CLASSVAR  # type: ignore[attr-defined]
        if f.default_factory is not dataclasses.MISSING:
            raise TypeError(f"field {name} cannot have a default factory")
        if f.kw_only is not dataclasses.MISSING:
            raise TypeError(f"field {name} is a ClassVar but specifies kw_only")
        return f
    f._field_type = _D._FIELD  # type: ignore[attr-defined]
    if f.kw_only is dataclasses.MISSING:
        f.kw_only = False
    if f.default.__class__.__hash__ is None:
        raise ValueError(f"mutable default {type(f.default)} for field {name} is not "
                         "allowed: use default_factory")
    return f


def _collect_std(cls: type, frozen: bool) -> tuple[dataclasses.Field[Any], ...]:
    """The fields as the standard `dataclass` collects them, with no method generated but
    its frozen `__setattr__` and `__delattr__` (it checks the bases' frozenness with them)."""
    documented = cls.__doc__
    if not documented:  # it would sign `object.__init__`: parsing that text signature
        cls.__doc__ = "-"  # compiles tokenize's patterns, ~7 ms once a process
    dataclasses.dataclass(cls, init=False, repr=False, eq=False, match_args=False,
                          frozen=frozen)
    cls.__doc__ = documented
    fields = dataclasses.fields(cls)
    pseudo = [f for f in cls.__dataclass_fields__.values()  # type: ignore[attr-defined]
              if f._field_type is not dataclasses._FIELD]  # type: ignore[attr-defined]
    if any(f.kw_only for f in fields) or any(
            f._field_type is dataclasses._FIELD_INITVAR for f in pseudo):  # type: ignore
        raise TypeError(f"{cls.__qualname__}: keyword-only or InitVar fields need "
                        "dataclasses.dataclass")
    return fields


def _order_defaults(fields: tuple[dataclasses.Field[Any], ...]) -> None:
    """The standard library's check, made when it compiles `__init__`: here, at once."""
    seen_default = False
    for f in fields:
        if f.init:
            if f.default is not dataclasses.MISSING or \
                    f.default_factory is not dataclasses.MISSING:
                seen_default = True
            elif seen_default:
                raise TypeError(f"non-default argument {f.name!r} follows default argument")


def _set(cls: type, name: str, fn: Callable[..., Any]) -> bool:
    """Like the standard library: a method the class defines itself is kept (False)."""
    if name in cls.__dict__:
        return False
    fn.__qualname__ = f"{cls.__qualname__}.{name}"
    fn.__name__ = name
    fn.__module__ = cls.__module__  # found again by pickle, as the standard library's are
    setattr(cls, name, fn)
    return True


# -- __init__, compiled when first called ----------------------------------------------------


def _lazy_init(cls: type, fields: tuple[dataclasses.Field[Any], ...], frozen: bool,
               post_init: bool) -> Callable[..., None]:
    """A stand-in that compiles the real `__init__` when first called and puts it on the class
    whenever it finds itself there (a wrapper someone put in its place is left alone, and goes
    on calling the stand-in, which calls the compiled one; once compiled, `__wrapped__` leads
    `inspect` to it). `__gitconf_init__` compiles it without calling it (`inspect.signature`).
    A field name the generated source could not take (a keyword) is compiled at once, to fail
    when the class is defined, as with the standard library."""
    made: list[Callable[..., None]] = []
    module = sys.modules.get(cls.__module__)

    def compile_now() -> Callable[..., None]:
        if not made:  # two threads may both compile: the same function, either kept
            real = _init(fields, frozen, post_init, module.__dict__ if module else {})
            real.__qualname__, real.__name__ = __init__.__qualname__, "__init__"
            __init__.__wrapped__ = real  # type: ignore[attr-defined]
            made.append(real)
        if cls.__dict__.get("__init__") is __init__:
            cls.__init__ = made[0]  # type: ignore[misc]
        return made[0]

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        compile_now()(self, *args, **kwargs)

    __init__.__gitconf_init__ = compile_now  # type: ignore[attr-defined]
    if any(not f.name.isidentifier() or iskeyword(f.name) for f in fields):
        compile_now()
    return __init__


def _init(fields: tuple[dataclasses.Field[Any], ...], frozen: bool, post_init: bool,
          globals_: dict[str, Any]) -> Callable[..., None]:
    """`__init__` from one `exec`, as the standard library makes it: positional-or-keyword
    parameters in field order, defaults as given (a factory's as its sentinel), then
    `__post_init__`; the instance is `__dataclass_self__` when a field is called `self`. The
    function is defined in the class's module (its globals, so `inspect` and `get_type_hints`
    resolve its annotations there); the values it needs are arguments of an outer one."""
    me = "__dataclass_self__" if any(f.name == "self" for f in fields) else "self"
    given: dict[str, Any] = {"__object_setattr": object.__setattr__} if frozen else {}
    params, body = [], []
    for f in fields:
        has_default = f.default is not dataclasses.MISSING
        has_factory = f.default_factory is not dataclasses.MISSING
        if has_factory:  # only what the source names: each is a cell of the closure
            given["__factory"] = _D._HAS_DEFAULT_FACTORY
            given[f"__fact_{f.name}"] = f.default_factory
        elif has_default:
            given[f"__dflt_{f.name}"] = f.default
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
        body.append(f"__object_setattr({me}, {f.name!r}, {value})" if frozen
                    else f"{me}.{f.name} = {value}")
    if post_init:
        body.append(f"{me}.__post_init__()")
    src = (f"def __create_fn__({', '.join(given)}):\n"
           f" def __init__({', '.join([me, *params])}):\n"
           + "".join(f"  {line}\n" for line in body or ["pass"])
           + " return __init__\n")
    ns: dict[str, Any] = {}
    exec(src, globals_, ns)  # source built here from field names, as the standard library does
    init: Callable[..., None] = ns["__create_fn__"](**given)
    init.__annotations__ = {f.name: f.type for f in fields if f.init} | {"return": None}
    return init


class _Signature:
    """`inspect.signature(cls)` asks `cls.__signature__` first: this compiles the `__init__`
    the class would call, if it is still a stand-in, then says there is none, so `inspect`
    goes on as for any class (its own `__new__`, a metaclass's `__call__`, an instance's
    `__call__`: all as without this)."""

    def __get__(self, obj: Any, owner: type) -> Any:
        for klass in owner.__mro__:
            init = klass.__dict__.get("__init__")
            if init is not None:
                compile_now = getattr(init, "__gitconf_init__", None)
                if compile_now is not None:
                    compile_now()
                break
        raise AttributeError("__signature__")


_SIGNATURE = _Signature()


def _text_signature(cls: type, fields: tuple[dataclasses.Field[Any], ...], made: bool) -> str:
    """`str(inspect.signature(cls))` without ` -> None`, written from the fields (the
    standard library's docstring for an undocumented class) without compiling anything."""
    import inspect

    if not made:
        return str(inspect.signature(cls)).replace(" -> None", "")  # its own `__init__`
    shown = []
    for f in fields:
        if not f.init:
            continue
        text = f"{f.name}: {inspect.formatannotation(f.type)}"
        if f.default_factory is not dataclasses.MISSING:
            text += f" = {_D._HAS_DEFAULT_FACTORY!r}"
        elif f.default is not dataclasses.MISSING:
            text += f" = {f.default!r}"
        shown.append(text)
    return f"({', '.join(shown)}) -> None".replace(" -> None", "")


# -- the other methods: closures -------------------------------------------------------------


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
