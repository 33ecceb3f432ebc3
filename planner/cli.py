"""The `planner` command: a thin shell over the library.

Each subcommand lives in `planner/commands/<name>.py` and exposes
`register(subparsers)`, which adds its parser and sets `func(args) -> int`.
Exit codes: 0 ok, 1 planning failed (does not fit, outputs differ...), 2 bad input.
Errors are one line on stderr; `--debug` shows the traceback. A closed stdout (`planner
... | head`) is not an error: the command stops quietly with status 0.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

COMMANDS = ["plan", "show", "solvers", "compare", "run", "export", "report", "sweep"]


def build_parser() -> argparse.ArgumentParser:
    """The `planner` parser with every subcommand registered."""
    p = argparse.ArgumentParser(prog="planner", description="Optimal memory plans for DNN inference on small devices.")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"planner.commands.{name}").register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the command line `argv` (default: sys.argv); the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    try:
        args = parser.parse_args(argv)  # --help writes to stdout too
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
    except BrokenPipeError:
        return _stdout_closed()
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit flush
        return code
    except BrokenPipeError:
        return _stdout_closed()
    except SystemExit as e:  # rich's Console.on_broken_pipe exits 1 when stdout is closed
        if isinstance(e.__context__, BrokenPipeError):
            return _stdout_closed()
        raise
    except KeyboardInterrupt:
        print("planner: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - every error becomes one clear line
        if args.debug:
            raise
        code, msg = classify(e)
        print(f"planner: error: {msg}", file=sys.stderr)
        return code


def _stdout_closed() -> int:
    """The reader of stdout went away (`| head`): stop quietly with status 0, pointing
    stdout at /dev/null so the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout without a file descriptor (captured in tests)
        pass
    return 0


def classify(e: Exception) -> tuple[int, str]:
    """Map library exceptions to (exit code, one-line message)."""
    from planner.commands.common import CliError
    from planner.simulate import PlanError
    from planner.solvers.base import DoesNotFit

    if isinstance(e, CliError):
        return e.code, str(e)
    if isinstance(e, DoesNotFit):
        return 1, str(e)
    if isinstance(e, PlanError):
        return 2, f"invalid plan: {e}"
    if isinstance(e, (ValueError, OSError, KeyError)):
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return 2, msg
    return 2, f"{type(e).__name__}: {e} (rerun with --debug for the traceback)"


if __name__ == "__main__":
    sys.exit(main())
