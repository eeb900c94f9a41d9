"""The ``clustersim`` command, assembled from one module per command group, and the
``simulate`` command of its own.

    clustersim simulate | workload {generate,chat,stats} | plan | plan-training | report
               | sweep | compare | place-experts
               | validate | profile [check] | reference {run,compare,record} | models | gpus

The command line sits at the top of the import graph (workloads, profiles → simulator →
validation → planners → reports → cli), so it may call any library function; nothing
below imports it. A user error prints ``error: <what and the fix>`` and exits with 2;
Ctrl-C prints one line and exits with 130; an internal error (a bug) prints one line
asking for a report and exits with 1, with its traceback only under ``--debug`` (given
anywhere on the line) or ``CLUSTERSIM_DEBUG=1``.
"""

from __future__ import annotations

import gc
import importlib
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterator, MutableMapping
from types import FrameType
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from cli import simulate

__all__ = ["COMMANDS", "app", "main", "run_command", "simulate_app", "simulate_main"]

# Each command and command group: (module, its function or typer app). A module is
# imported when its command runs (or a help page lists it), not when the command line
# is parsed, so `clustersim simulate` never loads the planners, reports or profiler.
# NOTE: the order is the order of `clustersim --help` (commands first, then groups).
COMMANDS: dict[str, tuple[str, str]] = {
    "simulate": ("cli.simulate", "simulate_command"),
    "validate": ("cli.validate", "validate_command"),
    "models": ("cli.catalog", "models_command"),
    "gpus": ("cli.catalog", "gpus_command"),
    "plan": ("cli.plan", "plan_command"),
    "plan-training": ("cli.plan", "plan_training_command"),
    "report": ("cli.report", "report_command"),
    "sweep": ("cli.sweep", "sweep_command"),
    "compare": ("cli.sweep", "compare_command"),
    "place-experts": ("cli.experts", "place_experts_command"),
    "workload": ("cli.workload", "app"),
    "profile": ("cli.profile", "app"),
    "reference": ("cli.reference", "app"),
}


def _load(name: str) -> Any:
    """The click command of ``COMMANDS[name]``, its module imported now."""
    module, attribute = COMMANDS[name]
    target = getattr(importlib.import_module(module), attribute)
    if isinstance(target, typer.Typer):  # a command group
        command = typer.main.get_command(target)
        command.name = name
        return command
    single = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    single.command(name)(target)
    return typer.main.get_command(single)


class _Commands(MutableMapping[str, Any]):
    """``COMMANDS`` as click's name → command mapping, each loaded when first looked up."""

    def __init__(self) -> None:
        self._loaded: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._loaded:
            if name not in COMMANDS:
                raise KeyError(name)
            self._loaded[name] = _load(name)
        return self._loaded[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        del self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*COMMANDS, *self._loaded]))

    def __len__(self) -> int:
        return len(dict.fromkeys([*COMMANDS, *self._loaded]))


class _LazyGroup(TyperGroup):
    """The ``clustersim`` group over :class:`_Commands`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.commands = _Commands()

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)


app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  cls=_LazyGroup,
                  help="clustersim: simulate and plan LLM serving and training clusters.")


def _version() -> str:
    """The installed package's version (the checkout's pyproject when not installed)."""
    from importlib import metadata  # NOTE: 30 ms, for --version only

    try:
        return metadata.version("clustersim")
    except metadata.PackageNotFoundError:  # pragma: no cover - a bare checkout
        return "unknown (not installed)"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"clustersim {_version()}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="print the version and exit")] = False,
    debug: Annotated[bool, typer.Option(
        "--debug", help="show the traceback of an internal error (a bug); may be given "
        "anywhere on the command line")] = False,
) -> None:
    """clustersim: simulate and plan LLM serving and training clusters."""


simulate_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
simulate_app.command()(simulate.simulate_command)


class Interrupted(BaseException):
    """Ctrl-C, raised past click (which would turn KeyboardInterrupt into "Aborted!"
    and exit 1), so the writers' clean-up runs and the command exits with 130."""


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise Interrupted


def _is_usage_error(error: Exception) -> bool:
    """A click-style exception (typer vendors click, so its classes are not click's):
    it formats its own message and carries its exit status."""
    return hasattr(error, "format_message") and isinstance(getattr(error, "exit_code", None),
                                                          int)


def run_command(command: Callable[..., object], argv: list[str] | None = None) -> int:
    """Run a command line the way users see it: user errors are click's and ours (exit
    2), Ctrl-C is one line (130), a bug is one line asking for a report (1) with the
    traceback under ``--debug``. Returns the exit status."""
    argv = sys.argv if argv is None else argv
    debug = "--debug" in argv[1:] or os.environ.get("CLUSTERSIM_DEBUG", "") not in ("", "0")
    args = [arg for arg in argv[1:] if arg != "--debug"]
    previous = signal.signal(signal.SIGINT, _interrupt)
    try:
        # standalone_mode=False: click hands its usage errors back instead of printing
        # a box of them, so they too become one line
        code = command(args=args, prog_name=os.path.basename(argv[0]), standalone_mode=False)
    except SystemExit as error:
        return error.code if isinstance(error.code, int) else (0 if error.code is None else 1)
    except (Interrupted, KeyboardInterrupt, typer.Abort):
        print("error: interrupted; outputs of this run were not written", file=sys.stderr)
        return 130
    except OSError as error:  # the machine's answer (a name too long, a full disk)
        name = f"{error.filename}: " if error.filename else ""
        print(f"error: {name}{error.strerror or error}", file=sys.stderr)
        return 2
    except Exception as error:
        if _is_usage_error(error):  # click's (typer's) own: a bad flag, a missing option
            context = getattr(error, "ctx", None)
            if type(error).__name__ == "NoArgsIsHelpError" and context is not None:
                print(context.get_help())  # a group given no command: its help
                return 2
            where = f" (see {context.command_path} --help)" if context is not None else ""
            message = error.format_message().strip() or "see --help"  # type: ignore[attr-defined]
            print(f"error: {message}{where}".replace("\n", " "), file=sys.stderr)
            return int(error.exit_code)  # type: ignore[attr-defined]
        # a bug: one line, the traceback only when asked
        if debug:
            traceback.print_exc()
        print(f"internal error: {type(error).__name__}: {error}".splitlines()[0][:500]
              + " -- this is a bug in clustersim; please report it with the command line"
              + ("" if debug else " (add --debug to see the traceback)"), file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, previous)
    return code if isinstance(code, int) else 0


def _process_settings() -> None:
    """One OpenBLAS thread unless the user chose otherwise: the simulator's arrays are
    small, and starting the thread pool cost a fifth of a small run's CPU time. And the
    garbage collector at a simulation's pace for the whole command (reading a trace and
    writing its rows allocate as a run does: ``simulator.collection``)."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    thresholds = gc.get_threshold()
    # NOTE: 50,000 allocations between young-generation collections (a run pauses the
    # collector itself: simulator.collection)
    gc.set_threshold(max(thresholds[0], 50_000), *thresholds[1:])


def main() -> None:
    """Entry point of the ``clustersim`` command."""
    _process_settings()
    sys.exit(run_command(app))


def simulate_main() -> None:
    """Entry point of the ``simulate`` command (same options as ``clustersim simulate``)."""
    _process_settings()
    sys.exit(run_command(simulate_app))
