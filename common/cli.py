"""What every `meetup-*` command shares: its argument parser and the way a failure ends it.

Every command ends a failure with one line per problem, `<command>: <what>`, never a traceback:
- exit status 2 for what the user gave: a bad argument, a malformed setting, a service that does not answer
  at the address the settings name;
- exit status 1 for what went wrong while running (a table that is not there yet, a split with no rows).

Library code raises `CommandError` (or its own errors) and never `SystemExit`; `command` turns them into the
line and the status, in `main` alone.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from common import logs
from common.settings import LOG_LEVELS, SettingsError

USAGE = 2  # the user's input is wrong: arguments, settings, the services they name
FAILED = 1  # the command ran and could not finish


class CommandError(Exception):
    """A failure a command reports in its own words: one line per line of the message."""

    def __init__(self, message: str, status: int = FAILED):
        super().__init__(message)
        self.status = status


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Each option's default after its help (when it has one worth saying), and the usage examples (the
    epilog) kept as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "%(default)" in text or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (and exit status 2) instead of the usage block and a line,
    and parsing the command line configures the command's logging (common/logs.py) from --log-level."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        logs.setup(self.prog, getattr(parsed, "log_level", None))
        return parsed, extras


def parser(prog: str, doc: str | None) -> Parser:
    """A command's parser from its module docstring: the first paragraph describes it, the rest (usage
    examples and notes) is the epilog of --help."""
    head, _, rest = (doc or "").strip().partition("\n\n")
    parser = Parser(prog=prog, description=head, epilog=rest or None, formatter_class=HelpFormatter)
    parser.add_argument(
        "--log-level", type=str.upper, choices=LOG_LEVELS, help="how much to log (default: MEETUP_LOG_LEVEL, else INFO)"
    )
    return parser


def say(prog: str, message: str) -> None:
    for line in str(message).splitlines() or [""]:
        print(f"{prog}: {line}", file=sys.stderr)


def command(
    prog: str, *errors: type[BaseException], status: int = USAGE
) -> Callable[[Callable[[list[str] | None], int]], Callable[..., int]]:
    """Decorate a command's `main(argv) -> int`: a `CommandError`, a malformed setting or one of `errors`
    (reported with `status`) ends it with its lines on stderr and its exit status."""

    def wrap(main: Callable[[list[str] | None], int]) -> Callable[..., int]:
        @functools.wraps(main)
        def run(argv: list[str] | None = None) -> int:
            try:
                return main(argv)
            except CommandError as error:
                say(prog, str(error))
                return error.status
            except SettingsError as error:
                say(prog, str(error))
                return USAGE
            except errors as error:  # noqa: B030 - a tuple of exception classes, given by the command
                say(prog, str(error))
                return status

        return run

    return wrap


TIME_HELP = "ISO date/time (2026-11-29T06:00:00Z; without a zone it is UTC) or epoch milliseconds"


def time_ms(text: str) -> int:
    """An argument that names a moment: epoch milliseconds, or an ISO date/time read as UTC when it names no
    zone (the one rule every command follows)."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a time: {text!r} ({TIME_HELP})") from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return int(stamp.timestamp() * 1000)


def partition_offsets(text: str) -> dict[int, int]:
    """An argument of per-partition Kafka offsets, as JSON: {"0": 1200, "1": 0}."""
    try:
        found = json.loads(text)
        if not isinstance(found, dict):
            raise ValueError("not an object")
        offsets = {int(partition): int(offset) for partition, offset in found.items()}
    except (ValueError, TypeError):
        raise argparse.ArgumentTypeError(
            f'not per-partition offsets: {text!r} (give a JSON object, e.g. \'{{"0": 1200, "1": 0}}\')'
        ) from None
    if any(p < 0 or o < 0 for p, o in offsets.items()):
        raise argparse.ArgumentTypeError(f"partitions and offsets are never negative: {text!r}")
    return offsets
