"""How every command logs: one line per event on stderr, `time level command component: message`.

    2026-12-04T19:10:58.123Z INFO meetup-chain pipelines.chain: silver-rsvps: batch 3, 250 rows, 41 rows/s

Each module logs through `logging.getLogger(__name__)`, so the component is the module; the command that
runs it configures logging once, when it parses its arguments (`common.cli.Parser`), from `--log-level` or
MEETUP_LOG_LEVEL (default INFO). The libraries' own chatter (py4j, Kafka's and AWS's clients) is held at
WARNING unless the level is DEBUG. What a command prints as its result (a table, a listing) stays on stdout,
and a command's one-line refusal (`meetup-chain: ...`, see common/cli.py) stays a plain line.
"""

from __future__ import annotations

import logging
import sys
import time

from common.settings import log_level

NOISY = ("py4j", "urllib3", "botocore", "boto3", "s3transfer", "kafka", "aiohttp.access", "websocket", "matplotlib")


class _UTCFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 - logging's
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


class _Stderr(logging.Handler):
    """Writes to whatever sys.stderr is when a record comes (pytest's capture swaps it)."""

    def __init__(self, command: str):
        super().__init__()
        self.command = command
        self.setFormatter(_UTCFormatter("%(asctime)s %(levelname)s %(command)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        record.command = self.command
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - logging must never take the command down
            self.handleError(record)


def setup(command: str, level: str | None = None) -> None:
    """Configure logging for `command` (once; a second call replaces the first): its level is `level`, else
    MEETUP_LOG_LEVEL, else INFO."""
    chosen = (level or log_level()).upper()
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _Stderr)]:
        root.removeHandler(handler)
    root.addHandler(_Stderr(command))
    root.setLevel(chosen)
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.DEBUG if chosen == "DEBUG" else logging.WARNING)
