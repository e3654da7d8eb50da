"""`gitconf.fastclass.dataclass` must behave as `dataclasses.dataclass` for every class shape
gitconf uses: the same class built both ways, then the same calls on both (hypothesis)."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitconf import fastclass

KINDS = ["plain", "default", "factory", "norepr", "nocompare", "nohash", "noinit_default",
         "noinit_factory", "classvar", "classvar_typing", "classvar_object", "mutable_default",
         "untyped_field"]
from dataclasses import KW_ONLY, InitVar  # noqa: E402

# the string annotations below are resolved in this module's namespace, as in gitconf's
NAMES = (ClassVar, typing, InitVar, KW_ONLY)
FIELDS = st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d", "e"]), st.sampled_from(KINDS)),
                  max_size=4, unique_by=lambda f: f[0])


def _namespace(spec: list[tuple[str, str]], post_init: bool) -> dict[str, Any]:
    ns: dict[str, Any] = {"__module__": __name__, "__annotations__": {}}
    for name, kind in spec:
        ns["__annotations__"][name] = "Any"
        if kind == "classvar":  # not fields: as the standard library tells them, from the text
            ns["__annotations__"][name] = "ClassVar[int]"
            ns[name] = 5
        elif kind == "classvar_typing":
            ns["__annotations__"][name] = "typing.ClassVar[list[int]]"
            ns[name] = []  # a mutable default is allowed on a ClassVar
        elif kind == "classvar_object":
            ns["__annotations__"][name] = ClassVar[int]
        elif kind == "mutable_default":
            ns[name] = []  # refused: ValueError
        elif kind == "untyped_field":
            del ns["__annotations__"][name]
            ns[name] = dataclasses.field(default=3)  # refused: TypeError
        elif kind == "default":
            ns[name] = 7
        elif kind == "factory":
            ns[name] = dataclasses.field(default_factory=list)
        elif kind == "norepr":
            ns[name] = dataclasses.field(default="secret", repr=False)
        elif kind == "nocompare":
            ns[name] = dataclasses.field(default=0, compare=False)
        elif kind == "nohash":
            ns[name] = dataclasses.field(default=1, hash=False)
        elif kind == "noinit_default":
            ns[name] = dataclasses.field(default="x", init=False)
        elif kind == "noinit_factory":
            ns[name] = dataclasses.field(default_factory=dict, init=False)
    if post_init:
        def __post_init__(self: Any) -> None:
            object.__setattr__(self, "posted", True)
        ns["__post_init__"] = __post_init__
    return ns


def _build(deco: Any, base: list[tuple[str, str]] | None, spec: list[tuple[str, str]],
           frozen: bool, eq: bool, post_init: bool) -> Any:
    """The classes, or the exception that building them raised (as its type and text)."""
    try:
        parent: type = object
        if base is not None:
            parent = deco(frozen=frozen, eq=eq)(type("Base", (), _namespace(base, False)))
        return deco(frozen=frozen, eq=eq)(type("Made", (parent,), _namespace(spec, post_init)))
    except (TypeError, ValueError) as exc:
        return (type(exc), str(exc))


def _outcome(fn: Any) -> Any:
    try:
        return ("ok", fn())
    except Exception as exc:  # the same exception type is what is compared
        return ("raised", type(exc))


@settings(max_examples=400, deadline=None)
@given(base=st.none() | FIELDS, spec=FIELDS, frozen=st.booleans(), eq=st.booleans(),
       post_init=st.booleans(), data=st.data())
def test_the_same_class_either_way(base: list[tuple[str, str]] | None,
                                   spec: list[tuple[str, str]], frozen: bool, eq: bool,
                                   post_init: bool, data: st.DataObject) -> None:
    std = _build(dataclasses.dataclass, base, spec, frozen, eq, post_init)
    fast = _build(fastclass._dataclass, base, spec, frozen, eq, post_init)
    if isinstance(std, tuple) or isinstance(fast, tuple):
        assert std == fast  # the same refusal (non-default after default, ...)
        return
    sig_std, sig_fast = inspect.signature(std), inspect.signature(fast)
    assert [(p.name, p.kind, p.default) for p in sig_std.parameters.values()] == \
        [(p.name, p.kind, p.default) for p in sig_fast.parameters.values()]
    assert str(sig_std) == str(sig_fast)  # annotations too
    assert std.__doc__ == fast.__doc__  # the class has none: the standard one, made from it
    assert [f.name for f in dataclasses.fields(std)] == [f.name for f in dataclasses.fields(fast)]
    assert [(f.name, f._field_type.name) for f in std.__dataclass_fields__.values()] == \
        [(f.name, f._field_type.name) for f in fast.__dataclass_fields__.values()]
    assert {n: getattr(std, n, "-") for n in "abcde"} == {n: getattr(fast, n, "-") for n in "abcde"}
    assert std.__match_args__ == fast.__match_args__
    assert (std.__hash__ is None) == (fast.__hash__ is None)
    names = list(sig_std.parameters)
    calls = data.draw(st.lists(st.tuples(st.integers(0, len(names)),
                                         st.lists(st.sampled_from([1, 2, "x", None]),
                                                  min_size=len(names), max_size=len(names)),
                                         st.sets(st.sampled_from(names) if names else
                                                 st.nothing())),
                               min_size=1, max_size=3))
    made: list[tuple[Any, Any]] = []
    for positional, values, omitted in calls:
        args = values[:positional]
        kwargs = {n: v for n, v in zip(names[positional:], values[positional:], strict=True)
                  if n not in omitted}
        one = _outcome(lambda a=args, k=kwargs: std(*a, **k))
        two = _outcome(lambda a=args, k=kwargs: fast(*a, **k))
        assert one[0] == two[0] and (one[0] == "ok" or one[1] is two[1])
        if one[0] == "ok":
            made.append((one[1], two[1]))
    for a_std, a_fast in made:
        assert repr(a_std) == repr(a_fast)
        assert dataclasses.asdict(a_std) == dataclasses.asdict(a_fast)
        assert getattr(a_std, "posted", False) == getattr(a_fast, "posted", False)
        assert _outcome(lambda o=a_std: hash(o))[0] == _outcome(lambda o=a_fast: hash(o))[0]
        for b_std, b_fast in made:
            assert (a_std == b_std) == (a_fast == b_fast)
            if a_std == b_std and _outcome(lambda o=a_std: hash(o))[0] == "ok":
                assert hash(a_fast) == hash(b_fast)
        copied = _outcome(lambda o=a_fast: dataclasses.replace(o))
        assert copied[0] == _outcome(lambda o=a_std: dataclasses.replace(o))[0]
        if copied[0] == "ok":
            assert copied[1] == a_fast or not eq
    for a_std, a_fast in made:  # last: these change the objects
        for action in ((lambda o, n=n: setattr(o, n, 99)) for n in names[:1]):
            assert _outcome(lambda act=action, o=a_std: act(o))[0] == \
                _outcome(lambda act=action, o=a_fast: act(o))[0]
        for action in ((lambda o, n=n: delattr(o, n)) for n in names[:1]):
            assert _outcome(lambda act=action, o=a_std: act(o))[0] == \
                _outcome(lambda act=action, o=a_fast: act(o))[0]


def test_gitconf_records_are_made_by_fastclass() -> None:
    """The records keep the standard introspection and frozen-ness."""
    from gitconf.records import Pin

    assert Pin.__dict__["__gitconf_frozen__"] is True  # made here, not by the standard library
    pin = Pin("c" * 40, "ci", "now", "why")
    assert dataclasses.is_dataclass(pin)
    assert dataclasses.replace(pin, reason="other").reason == "other"
    with pytest.raises(dataclasses.FrozenInstanceError):
        pin.reason = "changed"  # type: ignore[misc]
    assert Pin.__init__.__qualname__ == "Pin.__init__"
    assert repr(pin).startswith("Pin(commit=") and hash(pin) == hash(dataclasses.replace(pin))


def test_secrets_kept_out_of_repr_stay_out() -> None:
    from gitconf.gitsource import Credential

    fields = {f.name: f for f in dataclasses.fields(Credential)}
    assert not fields["password"].repr
    shown = repr(Credential(*[("hunter2" if name == "password" else "x")
                              for name in fields]))
    assert "hunter2" not in shown


def test_init_is_compiled_when_the_class_is_first_called() -> None:
    """Defining a class compiles nothing; its signature is there before any instance."""
    def make(deco: Any) -> Any:
        return deco(frozen=True)(type("Lazy", (), _namespace(
            [("a", "plain"), ("b", "factory"), ("c", "classvar")], True)))

    std, fast = make(dataclasses.dataclass), make(fastclass._dataclass)
    assert hasattr(fast.__dict__["__init__"], "__gitconf_init__")  # the stand-in
    assert str(inspect.signature(fast)) == str(inspect.signature(std)) == \
        "(a: 'Any', b: 'Any' = <factory>) -> None"
    assert fast.__doc__ == std.__doc__ == "Lazy(a: 'Any', b: 'Any' = <factory>)"
    one = fast(1)
    assert not hasattr(fast.__dict__["__init__"], "__gitconf_init__")  # compiled, kept
    assert fast.__init__.__qualname__ == "Lazy.__init__"
    assert one == fast(1, []) and one.posted and fast(2, b=[3]).b == [3]
    with pytest.raises(TypeError):
        fast()


def test_a_subclass_with_its_own_init_signs_with_it() -> None:
    def make(deco: Any) -> tuple[Any, Any]:
        @deco(frozen=True)
        class Base:
            x: int

        class Parsed(Base):
            def __init__(self, text: str) -> None:
                super().__init__(int(text))  # type: ignore[call-arg]  # the stand-in, reached through the subclass

        return Base, Parsed

    (std_base, std_sub), (base, sub) = make(dataclasses.dataclass), make(fastclass._dataclass)
    assert str(inspect.signature(sub)) == str(inspect.signature(std_sub)) == \
        "(text: 'str') -> 'None'"
    assert str(inspect.signature(base)) == str(inspect.signature(std_base)) == \
        "(x: 'int') -> None"
    assert sub("3").x == 3 == std_sub("3").x


@pytest.mark.parametrize("annotation", ["InitVar[int]", "dataclasses.InitVar[int]",
                                        dataclasses.InitVar[int], "KW_ONLY"])
def test_initvar_and_kw_only_are_left_to_the_standard_library(annotation: Any) -> None:
    """Both are told apart as the standard library tells them, then refused: gitconf's
    classes use neither (the standard `dataclass` handles them)."""
    ns = {"__module__": __name__, "__annotations__": {"a": annotation, "b": "int"}}
    with pytest.raises(TypeError, match="keyword-only or InitVar"):
        fastclass._dataclass(type("Odd", (), ns))


@pytest.mark.parametrize("by_wraps", [False, True])
def test_a_wrapped_init_calls_the_one_it_wraps(by_wraps: bool) -> None:
    """Code that wraps a class's `__init__` by hand (`tests/leakscan.py` does) keeps its
    wrapper, which goes on calling the stand-in, which calls the compiled one."""
    import functools

    @fastclass._dataclass(frozen=True)
    class Made:
        a: int

    seen: list[Any] = []
    original = Made.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        seen.append(self)

    wrapper = functools.wraps(original)(__init__) if by_wraps else __init__
    Made.__init__ = wrapper  # type: ignore[method-assign]
    assert str(inspect.signature(Made)) == ("(a: 'int') -> None" if by_wraps else
                                            "(*args: 'Any', **kwargs: 'Any') -> 'None'")
    assert Made(1).a == 1 and Made(a=2).a == 2 and len(seen) == 2
    assert Made.__dict__["__init__"] is wrapper


def test_signature_is_inspects_own_for_instances_and_other_constructors() -> None:
    def make(deco: Any) -> tuple[Any, Any]:
        @deco
        class Callable_:
            a: int

            def __call__(self, x: int, y: int) -> None: ...

        class New(Callable_):
            def __new__(cls, q: int, r: int) -> Any:
                return super().__new__(cls)

        return Callable_, New

    (std_call, std_new), (fast_call, fast_new) = make(dataclasses.dataclass), \
        make(fastclass._dataclass)
    assert str(inspect.signature(fast_call(1))) == str(inspect.signature(std_call(1)))
    assert str(inspect.signature(fast_new)) == str(inspect.signature(std_new))
    assert str(inspect.signature(fast_call, eval_str=True)) == \
        str(inspect.signature(std_call, eval_str=True)) == "(a: int) -> None"


def test_post_init_is_looked_for_when_the_class_is_made() -> None:
    from unittest import mock

    @fastclass._dataclass
    class Made:
        a: int

    with mock.patch.object(Made, "__post_init__", create=True):
        Made(1)  # the first call compiles: without a `__post_init__` call, as at definition
    assert Made(2).a == 2


def test_bases_from_the_standard_library_are_checked_as_it_checks_them() -> None:
    @dataclasses.dataclass(frozen=True)
    class Frozen:
        a: int

    @dataclasses.dataclass
    class Thawed:
        a: int

    @dataclasses.dataclass
    class WithInitVar:
        a: int
        iv: InitVar[int]

    @dataclasses.dataclass(kw_only=True)
    class KeywordOnly:
        a: int

    for deco, base in ((dataclasses.dataclass, Frozen), (fastclass._dataclass, Frozen)):
        with pytest.raises(TypeError, match="non-frozen dataclass from a frozen one"):
            deco(type("Child", (base,), {"__module__": __name__}))
    for deco, base in ((dataclasses.dataclass, Thawed), (fastclass._dataclass, Thawed)):
        with pytest.raises(TypeError, match="frozen dataclass from a non-frozen one"):
            deco(frozen=True)(type("Child", (base,), {"__module__": __name__}))
    for base in (WithInitVar, KeywordOnly):
        with pytest.raises(TypeError, match="keyword-only or InitVar"):
            fastclass._dataclass(type("Child", (base,), {"__module__": __name__,
                                                         "__annotations__": {"b": "int"}}))


def test_a_field_called_self_works_and_a_keyword_fails_at_once() -> None:
    """As the standard library: the instance is then `__dataclass_self__`; a keyword cannot
    be a parameter, and the class is refused when it is made."""
    def made(deco: Any, names: list[str]) -> Any:
        return deco(type("Odd", (), {"__module__": __name__,
                                     "__annotations__": dict.fromkeys(names, "int")}))

    std, fast = made(dataclasses.dataclass, ["self", "x"]), made(fastclass._dataclass,
                                                                  ["self", "x"])
    assert str(inspect.signature(fast)) == str(inspect.signature(std))
    assert (fast(1, 2).self, fast(self=3, x=4).x) == (1, 4)
    for deco in (dataclasses.dataclass, fastclass._dataclass):
        with pytest.raises(SyntaxError):
            made(deco, ["x", "class"])


def test_the_compiled_init_lives_in_the_class_module() -> None:
    """Its annotations resolve where the class's do (`eval_str`, `get_type_hints`), and
    the methods are found again by pickle."""
    import pickle

    from gitconf.records import Pin

    def make(deco: Any) -> Any:
        @deco(frozen=True)
        class WithPath:
            where: Path

        return WithPath

    std, fast = make(dataclasses.dataclass), make(fastclass._dataclass)
    fast(Path("x"))
    assert str(inspect.signature(fast, eval_str=True)) == \
        str(inspect.signature(std, eval_str=True)) == "(where: pathlib.Path) -> None"
    assert typing.get_type_hints(fast.__init__) == typing.get_type_hints(std.__init__)
    Pin("c" * 40, "ci", "now", "why")
    for method in (Pin.__repr__, Pin.__eq__, Pin.__init__):
        assert pickle.loads(pickle.dumps(method)) is method


def test_an_init_put_back_after_a_patch_is_replaced_again() -> None:
    from unittest import mock

    @fastclass._dataclass
    class Made:
        a: int

    original = Made.__init__
    calls: list[int] = []

    def spy(self: Any, *args: Any, **kwargs: Any) -> None:
        calls.append(1)
        original(self, *args, **kwargs)

    with mock.patch.object(Made, "__init__", spy):
        assert Made(1).a == 1 and calls == [1]
    assert Made.__dict__["__init__"] is original  # the stand-in, put back
    assert Made(2).a == 2 and Made.__dict__["__init__"] is not original  # replaced again
    assert str(inspect.signature(Made)) == "(a: 'int') -> None"


def test_a_standard_child_of_a_fast_base_is_checked_as_with_a_standard_base() -> None:
    @fastclass._dataclass(frozen=True)
    class Base:
        a: int

    child = dataclasses.dataclass(frozen=True)(type("Child", (Base,), {
        "__module__": __name__, "__annotations__": {"b": "int"}}))
    assert child(1, 2).b == 2
    with pytest.raises(TypeError, match="non-frozen dataclass from a frozen one"):
        dataclasses.dataclass(type("Thawed", (Base,), {"__module__": __name__}))
