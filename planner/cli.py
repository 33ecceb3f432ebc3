"""The `planner` command: a thin shell over the library.

Each subcommand lives in `planner/commands/<name>.py` and exposes
`register(subparsers)`, which adds its parser and sets `func(args) -> int`.

Exit codes (:data:`EXIT_CODES`, also in ``planner --help`` and the README): 0 ok, 1
planning failed (does not fit, outputs or metrics differ, an invalid plan in `show`), 2 bad
input (unreadable or corrupt files, bad options, a model or plan the planner cannot use),
3 internal error (a bug: rerun with ``--debug`` for the traceback), 130 stopped by Ctrl-C. Every error is one line
on stderr, argparse's own included (:class:`Parser`); `--debug` shows the traceback. A
closed stdout (`planner ... | head`) is not an error: the command stops quietly with status 0.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata as md
import os
import re
import sys
import time

from planner.suggest import did_you_mean

COMMANDS = ["plan", "show", "solvers", "compare", "run", "export", "report", "sweep", "zoo"]
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_CODES = {
    EXIT_OK: "ok",
    EXIT_FAILED: "planning failed: the model does not fit, outputs or metrics differ, `show` found an invalid plan",
    EXIT_BAD_INPUT: "bad input: unreadable or corrupt file, bad option value, a model or plan the planner cannot use",
    EXIT_INTERNAL: "internal error (a bug): rerun with --debug for the traceback",
    EXIT_INTERRUPTED: "stopped by Ctrl-C (`plan` writes the best plan so far, `compare` prints the rows finished)",
}
EPILOG = "exit codes:\n" + "\n".join(f"  {k}  {v}" for k, v in EXIT_CODES.items())


class UsageError(Exception):
    """A command line argparse cannot parse: one line, exit 2 (instead of argparse's usage block)."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `error` raises :class:`UsageError` instead of printing the
    usage block and exiting, so a bad option is one line on stderr like every other error
    (``--help`` is unchanged). Subparsers inherit the class (argparse uses ``type(self)``)."""

    def error(self, message: str):
        """argparse's hook for a command line it cannot parse: raise instead of exiting (with
        "did you mean" for an unknown choice, such as a misspelt command)."""
        m = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if m:
            message += did_you_mean(m.group(1), re.findall(r"'([^']*)'", m.group(2)))
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def _version() -> str:
    try:
        return md.version("planner")
    except md.PackageNotFoundError:  # run from a source tree that is not installed
        return "(not installed)"


def build_parser() -> argparse.ArgumentParser:
    """The `planner` parser with every subcommand registered."""
    p = Parser(
        prog="planner",
        description="Optimal memory plans for DNN inference on small devices.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    p.add_argument("--version", action="version", version=f"planner {_version()}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"planner.commands.{name}").register(sub)
    for sp in sub.choices.values():
        sp.epilog = sp.epilog or EPILOG
        sp.formatter_class = argparse.RawDescriptionHelpFormatter
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the command line `argv` (default: sys.argv); the exit status."""
    t0 = time.perf_counter()  # --time-limit counts from here (planner.commands.common.start_command)
    argv = sys.argv[1:] if argv is None else argv
    try:
        parser = build_parser()  # imports every command: Ctrl-C lands here often
    except KeyboardInterrupt:
        print("planner: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    try:
        args = parser.parse_args(argv)  # --help writes to stdout too
    except BrokenPipeError:
        return _stdout_closed()
    except UsageError as e:
        print(f"planner: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not getattr(args, "func", None):
        print(f"planner: error: no command given; one of {', '.join(COMMANDS)} (see planner --help)", file=sys.stderr)
        return EXIT_BAD_INPUT
    from planner.commands.common import NOTES, start_command

    NOTES.clear()
    start_command(t0)
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit flush
        for line in NOTES:  # the command's notes and warnings, after its output
            print(line, file=sys.stderr)
        return code
    except BrokenPipeError:
        return _stdout_closed()
    except SystemExit as e:  # rich's Console.on_broken_pipe exits 1 when stdout is closed
        if isinstance(e.__context__, BrokenPipeError):
            return _stdout_closed()
        raise
    except KeyboardInterrupt:
        print("planner: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:  # noqa: BLE001 - every error becomes one clear line
        if args.debug:
            raise
        code, msg = classify(e)
        print(f"planner: error: {one_line(msg)}", file=sys.stderr)
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


MAX_MESSAGE = 600  # characters of one error line


def one_line(msg: str) -> str:
    """`msg` as one line (newlines joined, very long texts cut, saying so)."""
    text = " ".join(part.strip() for part in str(msg).splitlines() if part.strip()) or "error"
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1].rstrip() + "…"


def _user_errors() -> tuple[type, ...]:
    """The exception types that mean "bad input" (exit 2): what the library raises on
    purpose for files, options and models it cannot use."""
    from planner.export import CannotExport
    from planner.graph import GraphError
    from planner.models.errors import ModelError
    from planner.plan import PlanFormatError
    from planner.sweep.spec import SpecError
    from planner.target import TargetError

    return (ModelError, PlanFormatError, TargetError, GraphError, CannotExport, SpecError)


def classify(e: BaseException) -> tuple[int, str]:
    """Map library exceptions to (exit code, one-line message): the exit codes of
    :data:`EXIT_CODES`. Anything not raised on purpose for bad input is an internal error."""
    from planner.commands.common import CliError
    from planner.solvers.base import DoesNotFit

    hint = "rerun with --debug for the traceback"
    if isinstance(e, CliError):
        return e.code, str(e)
    if isinstance(e, DoesNotFit):
        return EXIT_FAILED, str(e)
    if isinstance(e, _user_errors()):
        return EXIT_BAD_INPUT, str(e) or type(e).__name__
    if isinstance(e, MemoryError):
        return EXIT_BAD_INPUT, f"out of memory: the model or plan needs more host memory than this machine has ({hint})"
    if isinstance(e, OSError):
        where = f" {e.filename}" if getattr(e, "filename", None) else ""
        return EXIT_BAD_INPUT, f"cannot access{where}: {e.strerror or e}"
    what = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    return EXIT_INTERNAL, f"internal error: {what} ({hint})"


if __name__ == "__main__":
    sys.exit(main())
