"""The typer application, its shared options, and the one place errors become exit statuses.

Heavy libraries (grpc, jsonschema, rich tables) are imported inside the commands that use them:
a CLI run is dominated by imports, and `gitconf apply` of one key must stay well under a second.

Conventions every command follows: `--format`/`-o`/`-f`; JSON alone on stdout,
diagnostics on stderr; exit 0 success, 1 the check failed, 2 usage or connection error, 130
interrupted; `--etcd` and `--prefix` also before the command; `NO_COLOR` or `--no-color`: no
styling at all; tables at full width when the output is not a terminal.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from enum import Enum
from types import FrameType, ModuleType
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from typer.core import TyperCommand, TyperGroup

from ..errors import GitconfError
from . import coercion

if TYPE_CHECKING:
    from importlib.machinery import ModuleSpec

# -- environment variables, shown in the help of every command they apply to ------------------

ENV_VARS: dict[str, str] = {  # descriptions fit 80 columns beside the longest name
    "GITCONF_ETCD_ENDPOINTS": "etcd endpoints, like --etcd (default 127.0.0.1:2379)",
    "GITCONF_ETCD_USER": "etcd user (with GITCONF_ETCD_PASSWORD)",
    "GITCONF_ETCD_PASSWORD": "etcd password (never printed)",
    "GITCONF_ETCD_CACERT": "CA of etcd's certificate: turns TLS on",
    "GITCONF_ETCD_CERT": "client certificate for etcd (mutual TLS)",
    "GITCONF_ETCD_KEY": "private key of GITCONF_ETCD_CERT",
    "GITCONF_ETCD_TIMEOUT": "seconds to wait for etcd to answer (default 2)",
    "GITCONF_PREFIX": "key prefix in etcd, like --prefix (default /config)",
    "GITCONF_REPO": "the config repository, like --repo",
    "GITCONF_CACHE_DIR": "clones of URL repositories (~/.cache/gitconf)",
    "GITCONF_WEBHOOK_SECRET": "secret of the GitHub webhook (daemon)",
    "GITHUB_TOKEN": "opens override pull requests (unset: printed)",
    "GITHUB_API_URL": "GitHub Enterprise: https://HOST/api/v3",
    "GITHUB_ACTOR": "who deploys when --actor is not given",
    "NO_COLOR": "any value: no colours or styles (like --no-color)",
}
ETCD_ENV = ("GITCONF_ETCD_ENDPOINTS", "GITCONF_ETCD_USER", "GITCONF_ETCD_PASSWORD",
            "GITCONF_ETCD_CACERT", "GITCONF_ETCD_CERT", "GITCONF_ETCD_KEY",
            "GITCONF_ETCD_TIMEOUT", "GITCONF_PREFIX")
REPO_ENV = ("GITCONF_REPO", "GITCONF_CACHE_DIR")
GITHUB_ENV = ("GITHUB_TOKEN", "GITHUB_API_URL")


def env_help(*names: str) -> str:
    """An "Environment" section for a command's help (its epilog). It starts with a line
    break: help texts are dedented from their second line on, which would eat the indent."""
    width = max(len(n) for n in names)
    lines = [f"  {n.ljust(width)}  {ENV_VARS[n]}" for n in names]
    return "\nEnvironment:\n" + "\n".join(lines).replace("[", r"\[")


def helptext(text: str) -> str:
    """Help text for typer's rich markup: square brackets shown as they are."""
    return text.replace("[", r"\[")


# -- colour, width and interrupts, decided once per invocation --------------------------------

class _State:
    no_color = False
    depth = 0  # nested invocations (the demo runs commands in-process)
    handling = False  # Ctrl-C handled by this process's top-level call
    interrupted = False  # a Ctrl-C arrived
    reported = False  # and was reported on stderr


def _wants_no_color(args: Sequence[str]) -> bool:
    return "NO_COLOR" in os.environ or "--no-color" in args


def set_no_color(on: bool) -> None:
    """No styling anywhere: our consoles and typer's help and usage errors. Typer imports its
    `rich_utils` (rich.markdown, markdown-it: ~0.2 s) only for help, usage errors and
    tracebacks; a run that prints none of them must not pay for it, so the choice is applied
    when that module is imported, or at once if it already is."""
    _State.no_color = on
    rich_utils = sys.modules.get("typer.rich_utils")
    if rich_utils is not None:
        rich_utils.COLOR_SYSTEM = None if on else "auto"  # type: ignore[attr-defined]
    elif not any(isinstance(f, _RichUtilsColour) for f in sys.meta_path):
        sys.meta_path.insert(0, _RichUtilsColour())


class _RichUtilsColour:
    """Sets typer's colour system the moment `typer.rich_utils` is imported, from the choice
    this invocation made (`_State.no_color`), then steps aside. A meta path finder by its
    `find_spec` alone: `importlib.abc` would import `importlib.resources` and `tempfile` for
    nothing (5 ms of every run)."""

    def find_spec(self, name: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        if name != "typer.rich_utils":
            return None
        import importlib.util

        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        run = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            run(module)
            module.__dict__["COLOR_SYSTEM"] = None if _State.no_color else "auto"

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


INTERRUPT_GRACE = 3.0  # seconds a first Ctrl-C leaves for an orderly exit


def stop_children() -> None:
    """End worker processes this process started (the parallel loader's), and reap them."""
    mp = sys.modules.get("multiprocessing")
    if mp is None:
        return
    children = mp.active_children()
    for child in children:
        child.terminate()
    for child in children:
        child.join(timeout=1)


def _settle_threads(budget: float) -> None:
    """Give the process's other threads that end by themselves (non-daemon ones, and the
    feeder threads of multiprocessing queues, which release semaphores as they end) up to
    `budget` seconds to finish."""
    import threading
    import time

    deadline = time.monotonic() + budget
    for thread in threading.enumerate():
        if thread is threading.current_thread():
            continue
        if not thread.daemon or thread.name == "QueueFeederThread":
            thread.join(timeout=max(0.0, deadline - time.monotonic()))


def _release_semaphores(util: Any, timeout: float) -> None:
    """What multiprocessing does at exit (unlink its named semaphores), on a thread of its
    own so that a lock held by the interrupted code cannot hold the exit up."""
    import threading

    worker = threading.Thread(target=util._run_finalizers, args=(0,), daemon=True)
    worker.start()
    worker.join(timeout)


def end_interrupted(tidy: bool = True) -> None:
    """How an interrupted `gitconf` process ends: worker processes stopped, multiprocessing's
    semaphores released (`tidy`: after giving the threads that release them time to finish;
    not so for a second Ctrl-C or the watchdog, which must not wait), output flushed, exit
    status 130, and no interpreter shutdown, whose finalizers may wait on etcd calls the
    interrupt cut short."""
    try:
        stop_children()
        util = sys.modules.get("multiprocessing.util")
        if util is not None:
            if tidy:
                _settle_threads(1.5)  # a worker pool's threads may be releasing semaphores
            _release_semaphores(util, 1.0 if tidy else 0.2)
        if not _State.reported:
            os.write(2, b"interrupted\n")
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
    finally:
        os._exit(130)


def _second_interrupt(signum: int, frame: FrameType | None) -> None:
    os.write(2, b"interrupted again: exiting now\n")
    _State.reported = True
    end_interrupted(tidy=False)


def _first_interrupt(signum: int, frame: FrameType | None) -> None:
    """The first Ctrl-C unwinds the command (workers stopped, the etcd transaction in flight
    finished or abandoned: the next run completes an interrupted unit); a second one, or a
    cleanup that takes longer than INTERRUPT_GRACE, ends the process at once."""
    import threading

    _State.interrupted = True
    signal.signal(signal.SIGINT, _second_interrupt)
    timer = threading.Timer(INTERRUPT_GRACE, end_interrupted, (False,))
    timer.daemon = True
    timer.start()
    raise KeyboardInterrupt


def _unraisable(hook: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A Ctrl-C that lands in a finalizer (`__del__`) is swallowed by Python ("Exception
    ignored in ..."): end the process instead of carrying on."""

    def on_unraisable(info: Any) -> None:
        if isinstance(info.exc_value, KeyboardInterrupt) and _State.interrupted:
            end_interrupted()
        hook(info)

    return on_unraisable


@contextmanager
def interrupt_handling() -> Iterator[None]:
    """Ctrl-C for a whole `gitconf` process (main thread only)."""
    try:
        previous = signal.signal(signal.SIGINT, _first_interrupt)
    except ValueError:  # not the main thread (an embedding program): leave signals alone
        yield
        return
    hook = sys.unraisablehook
    sys.unraisablehook = _unraisable(hook)
    _State.interrupted = _State.reported = False
    try:
        yield
    finally:
        if _State.interrupted:
            end_interrupted()
        sys.unraisablehook = hook
        signal.signal(signal.SIGINT, previous)


class PlainHelp:
    """For commands and groups: the help option, which typer makes while parsing, converts
    its value without pydantic like every other option (`coercion`)."""

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)  # type: ignore[misc]
        if option is not None:
            coercion.install_param(option)
        return option


class GitconfCommand(PlainHelp, TyperCommand):
    """Every gitconf command (the default class of `GitconfTyper.command`)."""


class GitconfSubgroup(PlainHelp, TyperGroup):
    """A group of commands below the root (`gitconf overrides`)."""


class GitconfGroup(PlainHelp, TyperGroup):
    """The root command: colour is decided before anything is printed (help and usage errors
    included)."""

    def main(self, args: Sequence[str] | None = None, *pos: Any, **kw: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        coercion.install(self)  # plain options are converted without pydantic (~0.15 s)
        outer = _State.depth == 0
        set_no_color(_wants_no_color(argv) or (not outer and _State.no_color))
        _State.depth += 1
        try:
            return super().main(argv, *pos, **kw)
        finally:
            _State.depth -= 1


class GitconfTyper(typer.Typer):
    """`gitconf` as a process: Ctrl-C is handled from the moment the commands are built (a
    first one unwinds cleanly and exits 130, a second one exits at once). Commands run
    in-process by the demo, or by tests, leave signal handling to their caller."""

    def command(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("cls", GitconfCommand)
        return super().command(*args, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if _State.depth or _State.handling:
            return super().__call__(*args, **kwargs)
        _State.handling = True
        try:
            with interrupt_handling():
                argv = kwargs.get("args", args[0] if args else None)
                with self._only(command_named(sys.argv[1:] if argv is None else argv)):
                    command = typer.main.get_command(self)
                return command(*args, **kwargs)
        finally:
            _State.handling = False

    @contextmanager
    def _only(self, name: str | None) -> Iterator[None]:
        """Build only the command this process runs: typer builds every command's options
        from its signature (~50 ms for all of them, most of a one-key `apply`'s own work).
        No name, or one that is not a command: all of them (root help, "did you mean")."""
        saved = self.registered_commands, self.registered_groups
        commands = [c for c in saved[0] if _name_of(c) == name]
        groups = [g for g in saved[1] if g.typer_instance and g.typer_instance.info.name == name]
        if commands or groups:
            self.registered_commands, self.registered_groups = commands, groups
        try:
            yield
        finally:
            self.registered_commands, self.registered_groups = saved


_ROOT_OPTIONS_WITH_VALUE = ("--etcd", "--prefix")


def command_named(argv: Sequence[str]) -> str | None:
    """The command an argument list runs: its first word that is not a root option (or the
    value of one)."""
    it = iter(argv)
    for arg in it:
        if arg in _ROOT_OPTIONS_WITH_VALUE:
            next(it, None)
        elif arg == "--":
            return next(it, None)
        elif not arg.startswith("-"):
            return arg
    return None


def _name_of(info: Any) -> str:
    return info.name or info.callback.__name__.lower().replace("_", "-")


app = GitconfTyper(
    cls=GitconfGroup,
    name="gitconf",
    help="GitOps for service configuration in etcd: validate, diff, apply, roll back, "
         "reconcile.\n\n"
         "Teams keep configuration in Git as <service>/<environment>.yaml; gitconf checks it "
         "(validate), shows what would change in etcd (diff), writes it as versioned deploys "
         "(apply), restores any commit (rollback) and keeps etcd equal to a branch (daemon).",
    epilog="Examples:\n"
           "  gitconf demo                          the whole tour on a throwaway etcd\n"
           "  gitconf validate .                    check the repository (CI, pre-commit)\n"
           "  gitconf diff --repo .                 what apply would change\n"
           "  gitconf --etcd etcd:2379 status       every unit's state\n\n"
           + env_help(*ENV_VARS).lstrip("\n"),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class Format(str, Enum):
    text = "text"
    json = "json"


class ReportFormat(str, Enum):
    """diff and apply: also markdown (a GitHub job summary)."""

    text = "text"
    json = "json"
    markdown = "markdown"


class ValidateFormat(str, Enum):
    text = "text"
    json = "json"
    github = "github"
    markdown = "markdown"


FormatOpt = Annotated[Format, typer.Option(
    "--format", "-o", "-f", help="Output format: text, or json (alone on stdout).")]
ReportFormatOpt = Annotated[ReportFormat, typer.Option(
    "--format", "-o", "-f",
    help="Output format: text; json (alone on stdout); markdown (a GitHub job summary).")]
EtcdOpt = Annotated[
    str | None,
    typer.Option("--etcd", envvar="GITCONF_ETCD_ENDPOINTS", show_envvar=True,
                 help=helptext("etcd endpoints host:port[,host:port...] (also before the "
                               "command) [default: 127.0.0.1:2379]")),
]
PrefixOpt = Annotated[
    str, typer.Option("--prefix", envvar="GITCONF_PREFIX", show_envvar=True,
                      help="Key prefix in etcd (also before the command).")
]
RepoOpt = Annotated[
    str, typer.Option("--repo", "-r", envvar="GITCONF_REPO", show_envvar=True,
                      help="Working tree, bare repository or URL (cloned into a cache).")
]
RefOpt = Annotated[str, typer.Option("--ref", help="Any commit-ish to read the config from.")]
ServiceOpt = Annotated[list[str] | None, typer.Option("--service", "-s",
                                                      help="Only this service (repeatable).")]
EnvOpt = Annotated[list[str] | None, typer.Option("--env", "-e",
                                                  help="Only this environment (repeatable).")]
ShowSecretsOpt = Annotated[bool, typer.Option("--show-secrets",
                                              help="Show values marked secret instead of ***.")]
ActorOpt = Annotated[str | None, typer.Option(
    "--actor", help=helptext("Who deploys (deployed_by) [default: $GITHUB_ACTOR, else "
                             "user@host]."))]

F = TypeVar("F", bound=Callable[..., Any])


def edge(fn: F) -> F:
    """Render a `GitconfError` once, on stderr, and exit with the status its class carries."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except GitconfError as exc:
            err(f"error: {exc}")
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt as exc:
            # let go of the interrupted frames now, so what they hold (the parallel loader's
            # worker processes) is shut down before the interpreter exits, not after
            traceback.clear_frames(exc.__traceback__)
            del exc
            stop_children()
            err("interrupted: nothing more was written (the next run finishes any unit left "
                "half-deployed)")
            _State.reported = True
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def err(message: str) -> None:
    """A diagnostic line on stderr (never on stdout, which JSON output owns)."""
    console(stderr=True).print(message, markup=False)


def json_text(doc: Any) -> str:
    """A document as gitconf prints JSON (`out_json`, and `planstream`, which prints a
    document in pieces and must print the same bytes)."""
    return json.dumps(doc, indent=2, ensure_ascii=False, default=str)


def out_json(doc: Any) -> None:
    sys.stdout.write(json_text(doc) + "\n")


FULL_WIDTH = 1 << 14  # off a terminal, tables are never cut to 80 columns


def _style_args() -> dict[str, Any]:
    return {"color_system": None} if _State.no_color else {}


def console(stderr: bool = False) -> Any:
    """Where text output goes. On a terminal, its width; otherwise (a pipe, a file, CI) wide
    enough that no table is ever cut or wrapped (COLUMNS still wins when set). Emoji codes
    stay as written: `:fire:` in a value, a unit name or a commit subject is text, not a
    picture (and rich's 3,600 codes are not loaded for it)."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() or os.environ.get("COLUMNS") else FULL_WIDTH
    return Console(highlight=False, soft_wrap=True, emoji=False, stderr=stderr, width=width,
                   **_style_args())


def is_terminal() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty() and os.environ.get("CI") is None


def shows_progress() -> bool:
    """A progress bar: only for a person watching (stderr a terminal, not CI)."""
    return sys.stderr.isatty() and os.environ.get("CI") is None


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        print(f"gitconf {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    etcd: Annotated[str | None, typer.Option(
        "--etcd", help=helptext("etcd endpoints for every command (env var: "
                                "GITCONF_ETCD_ENDPOINTS) [default: 127.0.0.1:2379]"))] = None,
    prefix: Annotated[str | None, typer.Option(
        "--prefix", help=helptext("Key prefix in etcd for every command (env var: "
                                  "GITCONF_PREFIX) [default: /config]"))] = None,
    no_color: Annotated[bool, typer.Option(
        "--no-color", help="No colours or styles (also: NO_COLOR set to any value).")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """GitOps for service configuration in etcd."""
    ctx.ensure_object(dict)
    ctx.obj.update({"etcd": etcd, "prefix": prefix})
    if no_color:
        set_no_color(True)
