"""The chain's heartbeat: which of its queries run, written beside the tables every metrics flush (10 s).

    <root>/<generation>/_heartbeat      {"at": "2026-12-03T16:55:00+00:00", "running": ["gold-rsvps", ...]}

A quiet stream and a stopped chain look the same in the tables (no new batch either way); the heartbeat
tells them apart for the app's "as of" line. The chain writes `running: []` when it stops. Plain JSON
through common.store, so the app reads it without Spark.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from common.settings import Settings
from common.store import Store

NAME = "_heartbeat"


def beat(settings: Settings, generation: str, running: list[str], now: datetime | None = None) -> None:
    at = (now or datetime.now(UTC)).isoformat()
    Store(settings).write(f"{generation}/{NAME}", json.dumps({"at": at, "running": sorted(running)}).encode())


def last(settings: Settings, generation: str) -> tuple[datetime, list[str]] | None:
    """(when, the queries running then), or None when no chain has written one in this generation."""
    raw = Store(settings).read(f"{generation}/{NAME}")
    if raw is None:
        return None
    record = json.loads(raw)
    return datetime.fromisoformat(record["at"]), list(record["running"])
