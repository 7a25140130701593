"""The silver tables computed independently: plain Python over the raw frames and their Kafka coordinates.

This follows DESIGN.md's contract directly and shares no code with pipelines/: the state of each row
is the message with the greatest (mtime, Kafka partition, offset) that mentions it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

SERVICES = ("facebook", "twitter", "linkedin", "tumblr", "flickr")

# table -> business columns compared (keys first), as the tests select them
COLUMNS = {
    "rsvps": ("rsvp_id", "event_id", "member_id", "mtime_ms", "response", "guests", "visibility"),
    "events": ("event_id", "group_id", "venue_id", "event_name", "event_url", "time_ms"),
    "venues": ("venue_id", "venue_name", "lat", "lon"),
    "members": ("member_id", "member_name", "photo"),
    "member_services": ("member_id", "service", "identifier"),
    "groups": (
        "group_id",
        "group_name",
        "group_urlname",
        "group_city",
        "group_state",
        "group_country",
        "group_lat",
        "group_lon",
    ),  # fmt: skip
    "topics": ("urlkey", "topic_name"),
    "group_topics": ("group_id", "urlkey"),
}
KEY_LENGTH = {"member_services": 2, "group_topics": 2}


def expected_tables(records: Iterable[tuple[int, int, bytes]]) -> dict[str, set[tuple]]:
    """records: (partition, offset, frame) of valid RSVP messages -> {table: set of row tuples}."""
    newest: dict[str, dict[tuple, tuple[tuple, tuple]]] = {table: {} for table in COLUMNS}

    def offer(table: str, row: tuple, version: tuple) -> None:
        key = row[: KEY_LENGTH.get(table, 1)]
        current = newest[table].get(key)
        if current is None or version > current[0]:
            newest[table][key] = (version, row)

    for partition, offset, frame in records:
        m = json.loads(frame)
        version = (m["mtime"], partition, offset)
        member, event, group, venue = m["member"], m["event"], m["group"], m.get("venue")
        offer(
            "rsvps",
            (
                m["rsvp_id"],
                event["event_id"],
                member["member_id"],
                m["mtime"],
                m["response"],
                m["guests"],
                m["visibility"],
            ),
            version,
        )
        offer(
            "events",
            (
                event["event_id"],
                group["group_id"],
                venue["venue_id"] if venue else None,
                event["event_name"],
                event["event_url"],
                event.get("time"),
            ),
            version,
        )
        if venue:
            offer("venues", (venue["venue_id"], venue["venue_name"], float(venue["lat"]), float(venue["lon"])), version)
        offer("members", (member["member_id"], member["member_name"], member.get("photo")), version)
        for service in SERVICES:
            identifier = member.get("other_services", {}).get(service, {}).get("identifier")
            if identifier is not None:
                offer("member_services", (member["member_id"], service, identifier), version)
        offer(
            "groups",
            (
                group["group_id"],
                group["group_name"],
                group["group_urlname"],
                group["group_city"],
                group.get("group_state"),
                group["group_country"],
                float(group["group_lat"]),
                float(group["group_lon"]),
            ),  # fmt: skip
            version,
        )
        for topic in group["group_topics"]:
            offer("topics", (topic["urlkey"], topic["topic_name"]), version)
            offer("group_topics", (group["group_id"], topic["urlkey"]), version)
    return {table: {row for _, row in rows.values()} for table, rows in newest.items()}
