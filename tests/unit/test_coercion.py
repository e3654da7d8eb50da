"""The plain coercion of command-line values (gitconf.cli.coercion) gives what typer's own,
pydantic-based coercion gives, for every annotation gitconf's options use: the same value when
both accept, typer's error when typer refuses. And a CLI run does not import pydantic."""

from __future__ import annotations

import subprocess
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import pytest
import typer
from hypothesis import given, settings
from hypothesis import strategies as st
from typer._coercion import build_runtime_param

from gitconf.cli import coercion


class Colour(str, Enum):
    red = "red"
    green = "green"


def _options() -> dict[str, Any]:
    """The parameters typer builds for options shaped like gitconf's."""
    app = typer.Typer()

    @app.command()
    def cmd(
        name: Annotated[str, typer.Option()] = "x",
        maybe: Annotated[str | None, typer.Option()] = None,
        flag: Annotated[bool, typer.Option()] = False,
        count: Annotated[int, typer.Option(min=2)] = 2,
        bounded: Annotated[int, typer.Option(min=1, max=9)] = 3,
        path: Annotated[Path | None, typer.Option()] = None,
        colour: Annotated[Colour, typer.Option()] = Colour.red,
        many: Annotated[list[str] | None, typer.Option()] = None,
        colours: Annotated[list[Colour] | None, typer.Option()] = None,
        pair: Annotated[tuple[str, str] | None, typer.Option()] = None,
    ) -> None:
        pass

    @app.command()
    def other() -> None:
        pass

    command = typer.main.get_command(app)
    (cmd_command,) = [c for c in command.commands.values() if c.name == "cmd"]  # type: ignore[attr-defined]
    return {p.name: p for p in cmd_command.params}


PARAMS = _options()


def outcome(runtime: Any, param: Any, value: Any) -> tuple[str, Any]:
    try:
        return "ok", runtime.coerce(value, param=param, ctx=None)
    except Exception as exc:
        return "error", (type(exc).__name__, str(exc))


def both(name: str, value: Any) -> tuple[tuple[str, Any], tuple[str, Any]]:
    param = PARAMS[name]
    desc = param.type_descriptor
    light_class = coercion._light_class()
    assert light_class is not None, "typer's coercion internals moved: update gitconf.cli.coercion"
    light = light_class(parameter_info=desc.parameter_info, annotation=desc.annotation)
    return outcome(light, param, value), outcome(build_runtime_param(desc), param, value)


def same(name: str, value: Any) -> None:
    mine, typers = both(name, value)
    assert mine == typers
    if mine[0] == "ok":
        assert type(mine[1]) is type(typers[1])


words = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
numbers = st.one_of(st.integers(-20, 20).map(str), st.from_regex(r"[-+ 0-9_.e]{0,6}",
                                                                   fullmatch=True))


@settings(max_examples=150, deadline=None)
@given(value=words)
def test_strings_paths_and_choices_as_typer(value: str) -> None:
    for name in ("name", "maybe", "path", "colour"):
        same(name, value)
    same("many", (value, value))
    same("colours", (value,))
    same("pair", (value, "b"))
    same("pair", (value,))


@settings(max_examples=150, deadline=None)
@given(value=numbers)
def test_integers_and_their_bounds_as_typer(value: str) -> None:
    same("count", value)
    same("bounded", value)


@pytest.mark.parametrize(("name", "value"), [
    ("flag", True), ("flag", False), ("flag", "true"), ("flag", "0"), ("count", 2),
    ("count", 1), ("bounded", 10), ("colour", Colour.green), ("colours", ["green", "red"]),
    ("path", Path("a")), ("path", "."), ("path", ""), ("pair", ["a", "b", "c"]),
])
def test_edge_values_as_typer(name: str, value: Any) -> None:
    same(name, value)


def test_installed_on_every_plain_option_and_the_help_option() -> None:
    from gitconf.cli.main import app

    command = typer.main.get_command(app)
    coercion.install(command)
    seen = []
    for sub in [command, *command.commands.values()]:  # type: ignore[attr-defined]
        help_option = sub.get_help_option(typer.Context(sub, info_name="gitconf"))
        for param in [*sub.params, help_option]:
            seen.append(param.name)
            assert type(param._runtime_param).__name__ == "PlainRuntimeParam", param.name
    assert "help" in seen and "format" in seen


def test_a_cli_run_does_not_import_pydantic(tmp_path: Path) -> None:
    (tmp_path / "svc").mkdir()
    (tmp_path / "svc" / "prod.yaml").write_text("a: 1\n")
    # main() ends the process (cli.main._exit), running atexit handlers first
    code = ("import atexit, sys; from gitconf.cli.main import main\n"
            "atexit.register(lambda: print('pydantic' in sys.modules))\n"
            "sys.argv = ['gitconf', *sys.argv[1:]]\nmain()")
    for args in (["validate", str(tmp_path), "-f", "json"], ["status", "--help"],
                 ["overrides", "list", "--help"]):
        res = subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                             text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        assert res.stdout.strip().splitlines()[-1] == "False", args
