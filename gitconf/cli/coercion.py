"""Typer parameter coercion without pydantic, for the plain types gitconf's options use.

Typer (0.28 and later) converts every command-line value through a pydantic `TypeAdapter` it
builds for the parameter on first use. Importing pydantic and building the adapters costs
~0.15 s a run, as much as a one-key `apply`'s own work, for options that are plain: `str`,
`bool`, `int` with bounds, `Path`, enums, and lists or pairs of those. Here such a value, when
it already has the expected shape, is converted the way typer's adapter converts it. Anything
else (a bad value, an annotation not listed, typer internals that moved) goes to typer's own
coercion, so every error and message stays typer's. `tests/unit/test_coercion.py` holds both
to the same results, and fails if typer's internals change under this module.
"""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path
from typing import Any, get_args, get_origin

_INT = re.compile(r"-?(0|[1-9][0-9]*)\Z")


class _Unplain(Exception):
    """A value (or annotation) this module does not convert: typer's coercion decides."""


def plain_value(annotation: Any, info: Any, value: Any, ctx: Any = None,
                param: Any = None) -> Any:
    """`value` converted to `annotation` as typer's pydantic adapter would, or `_Unplain`."""
    origin = get_origin(annotation)
    if origin is list and isinstance(value, (list, tuple)):
        (item,) = get_args(annotation)
        return [plain_value(item, info, v, ctx, param) for v in value]
    if origin is tuple and isinstance(value, (list, tuple)):
        items = get_args(annotation)
        if len(items) != len(value) or Ellipsis in items:
            raise _Unplain
        return tuple(plain_value(t, info, v, ctx, param) for t, v in zip(items, value, strict=True))
    if annotation is str and isinstance(value, str):
        return value
    if annotation is bool and isinstance(value, bool):
        return value
    if annotation is int:
        return _plain_int(info, value)
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return _plain_choice(annotation, info, value, ctx)
    if annotation is Path and isinstance(value, (str, Path)) and str(value) and \
            info.path_type in (None, Path):
        from typer._param_types import coerce_cli_path

        return coerce_cli_path(Path(value), info, path_type=Path, param=param, ctx=ctx)
    raise _Unplain


def _plain_int(info: Any, value: Any) -> int:
    if isinstance(value, bool) or info.clamp:
        raise _Unplain
    if isinstance(value, str) and _INT.match(value):
        value = int(value)
    if not isinstance(value, int):
        raise _Unplain
    if (info.min is not None and value < info.min) or (info.max is not None and value > info.max):
        raise _Unplain
    return value


def _plain_choice(enum: type[Enum], info: Any, value: Any, ctx: Any) -> Enum:
    if isinstance(value, enum):
        return value
    if not isinstance(value, str) or not info.case_sensitive or \
            (ctx is not None and ctx.token_normalize_func is not None):
        raise _Unplain
    for member in enum:
        if str(member.value) == value:
            return member
    raise _Unplain


def _supported(annotation: Any) -> bool:
    origin = get_origin(annotation)
    if origin in (list, tuple):
        args = get_args(annotation)
        return bool(args) and all(_supported(a) for a in args)
    return annotation in (str, bool, int, Path) or (
        isinstance(annotation, type) and issubclass(annotation, Enum))


_LIGHT: list[type] = []  # the RuntimeParam subclass, made once typer's module is imported


def _light_class() -> type | None:
    """A typer `RuntimeParam` whose conversion is `plain_value`, falling back to the one
    typer builds; None when typer no longer has these internals."""
    if _LIGHT:
        return _LIGHT[0]
    try:
        from typer._coercion import RuntimeParam, build_runtime_param
    except ImportError:
        return None

    class PlainRuntimeParam(RuntimeParam):
        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            try:
                return plain_value(self.annotation, self.parameter_info, value, ctx, param)
            except Exception:  # typer's own coercion decides, and words the error
                full = build_runtime_param(param.type_descriptor)
                param._runtime_param = full
                return full._coerce_value(value, param=param, ctx=ctx)

    _LIGHT.append(PlainRuntimeParam)
    return PlainRuntimeParam


def install_param(param: Any) -> None:
    """Give `param` the plain coercion when its annotation is one it converts and typer has
    not built its own yet."""
    light = _light_class()
    desc = getattr(param, "type_descriptor", None)
    if light is None or desc is None or getattr(param, "_runtime_param", False) is not None:
        return
    if desc.file_annotation is None and desc.parameter_info.parser is None and \
            _supported(desc.annotation):
        param._runtime_param = light(parameter_info=desc.parameter_info,
                                     annotation=desc.annotation)


def install(command: Any) -> None:
    """`install_param` for `command`'s parameters and its subcommands'. (The help option is
    made during parsing: `cli.app.PlainHelp` covers it.)"""
    for param in getattr(command, "params", ()):
        install_param(param)
    for sub in getattr(command, "commands", {}).values():
        install(sub)
