"""The gold tables computed independently: plain Python over the raw frames and their Kafka coordinates.

Follows the contract in docs/architecture.md ("Gold") and shares no code with pipelines/:
- a message is late when its mtime is more than `lateness_ms` below the greatest mtime of the earlier
  offsets of its partition; late messages are listed, never counted;
- each RSVP counts once, as its newest on-time message (greatest mtime, then partition, then offset),
  in the minute and hour of that message's mtime.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime

MINUTE_MS = 60_000
HOUR_MS = 3_600_000


def _floor(ms: int, unit: int) -> datetime:
    return datetime.fromtimestamp(ms // unit * unit / 1000, tz=UTC).replace(tzinfo=None)


def split_late(records: Iterable[tuple[int, int, bytes]], lateness_ms: int) -> tuple[list[dict], list[dict]]:
    """(on-time messages, late messages), each message with its `_partition` and `_offset`."""
    on_time, late = [], []
    seen_max: dict[int, int] = {}
    for partition, offset, frame in sorted(records, key=lambda r: (r[0], r[1])):
        m = json.loads(frame)
        m["_partition"], m["_offset"] = partition, offset
        before = seen_max.get(partition)
        (late if before is not None and m["mtime"] < before - lateness_ms else on_time).append(m)
        seen_max[partition] = m["mtime"] if before is None else max(before, m["mtime"])
    return on_time, late


def final_states(on_time: list[dict]) -> dict[int, dict]:
    states: dict[int, dict] = {}
    for m in on_time:
        current = states.get(m["rsvp_id"])
        version = (m["mtime"], m["_partition"], m["_offset"])
        if current is None or version > (current["mtime"], current["_partition"], current["_offset"]):
            states[m["rsvp_id"]] = m
    return states


def expected_gold(records: Iterable[tuple[int, int, bytes]], lateness_ms: int) -> dict[str, set[tuple]]:
    """{table: rows} for the count tables (keys..., yes, no, guests) and `late_rsvps` (partition, offset)."""
    on_time, late = split_late(records, lateness_ms)
    counts: dict[str, dict[tuple, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0, 0]))
    for m in final_states(on_time).values():
        group = m["group"]
        minute, hour = _floor(m["mtime"], MINUTE_MS), _floor(m["mtime"], HOUR_MS)
        region = (group.get("group_country"), group.get("group_state"), group.get("group_city"))
        yes = m["response"] == "yes"
        keys = {
            "rsvps_by_region_minute": [(minute, *region)],
            "rsvps_by_region_hour": [(hour, *region)],
            "topics_by_hour": [(hour, urlkey) for urlkey in {t["urlkey"] for t in group["group_topics"]}],
            "groups_by_minute": [(minute, group["group_id"])],
            "events_by_minute": [(m["event"]["event_id"], minute)],
            "rsvp_totals": [("rsvps",)],
        }
        for table, table_keys in keys.items():
            for key in table_keys:
                row = counts[table][key]
                row[0] += 1 if yes else 0
                row[1] += 0 if yes else 1
                row[2] += m["guests"] if yes else 0
    tables = {table: {(*key, *row) for key, row in rows.items()} for table, rows in counts.items()}
    tables["late_rsvps"] = {(m["_partition"], m["_offset"]) for m in late}
    return tables
