"""The Meetup stream protocol: one JSON text frame per record, one path per stream.

Shared by the producer (which must work against any endpoint speaking it) and the replay server.
"""

from __future__ import annotations

import json
import re
from typing import Any

STREAM_PATHS = {"rsvps": "/2/rsvps", "event_comments": "/2/event_comments", "photos": "/2/photos"}
PATH_STREAMS = {path: stream for stream, path in STREAM_PATHS.items()}

# The record's own id, which becomes the Kafka key so every version of one record stays in order.
ID_FIELDS = {"rsvps": "rsvp_id", "event_comments": "id", "photos": "photo_id"}
# The record's modification time (epoch ms): what `since_mtime` resumes from.
MTIME_FIELD = "mtime"

# "rsvp_id" is a key only at the top level of an RSVP, and a quote inside a JSON string is always
# escaped, so this cannot match inside a value. It saves a full parse on the hot path.
_RSVP_ID = re.compile(rb'"rsvp_id"\s*:\s*(-?\d+)\s*[,}]')
_MTIME = re.compile(rb'"mtime"\s*:\s*(-?\d+)\s*[,}]')


def record_of(frame: bytes) -> dict[str, Any] | None:
    """The frame parsed as a JSON object, or None (not JSON, not UTF-8, or not an object)."""
    try:
        record = json.loads(frame)
    except (ValueError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) else None


def extract_key(stream: str, frame: bytes) -> bytes | None:
    """The record id as Kafka key bytes, or None when the frame has no readable id."""
    if stream == "rsvps":
        matches = _RSVP_ID.findall(frame)
        if len(matches) == 1:
            key: bytes = matches[0]
            return key
    record = record_of(frame)
    if record is None:
        return None
    value = record.get(ID_FIELDS[stream])
    if isinstance(value, bool) or not isinstance(value, (int, str)) or value == "":
        return None
    return str(value).encode()


def extract_mtime(frame: bytes) -> int | None:
    """The top-level mtime of a frame, or None. Nested objects of these streams carry no `mtime`."""
    matches = _MTIME.findall(frame)
    if len(matches) == 1:
        return int(matches[0])
    record = record_of(frame)
    value = record.get(MTIME_FIELD) if record is not None else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def extract_event(frame: bytes) -> str | None:
    """The event a message belongs to: an RSVP's or a comment's `event.event_id`, a photo album's event."""
    record = record_of(frame)
    if record is None:
        return None
    event = record.get("event") or (record.get("photo_album") or {}).get("event") or {}
    value = event.get("event_id", event.get("id")) if isinstance(event, dict) else None
    return None if value is None else str(value)
