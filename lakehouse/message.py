"""The RSVP message, flat: each field of the nested message under one name, spelled here once.

Silver's 3NF tables, gold's facts and the model's history all read fields of the parsed message (the `msg`
struct of `validation.parse`); they name them here instead of spelling each path:

    valid_df.select(*message.flat("rsvp_id", "event_id"), message.field("group_country").alias("country"))
"""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

# flat name -> path in the message (schemas.RSVP_MESSAGE); a field keeps its own name where it is unique
PATHS = {
    "rsvp_id": "rsvp_id",
    "mtime": "mtime",
    "response": "response",
    "guests": "guests",
    "visibility": "visibility",
    "event_id": "event.event_id",
    "event_name": "event.event_name",
    "event_url": "event.event_url",
    "time": "event.time",
    "member_id": "member.member_id",
    "member_name": "member.member_name",
    "photo": "member.photo",
    "other_services": "member.other_services",
    "group_id": "group.group_id",
    "group_name": "group.group_name",
    "group_urlname": "group.group_urlname",
    "group_city": "group.group_city",
    "group_state": "group.group_state",
    "group_country": "group.group_country",
    "group_lat": "group.group_lat",
    "group_lon": "group.group_lon",
    "group_topics": "group.group_topics",
    "venue": "venue",  # the whole venue: null for an RSVP to an event without one
    "venue_id": "venue.venue_id",
    "venue_name": "venue.venue_name",
    "lat": "venue.lat",
    "lon": "venue.lon",
}
MESSAGE = "msg"  # the parsed message's column


def field(name: str) -> Column:
    """One field of the message, by its flat name (not aliased)."""
    return F.col(f"{MESSAGE}.{PATHS[name]}")


def flat(*names: str) -> list[Column]:
    """Fields of the message as columns of their flat names."""
    return [field(name).alias(name) for name in names]


def version() -> list[Column]:
    """The message's version, which newest-wins compares (schemas.VERSION_COLUMNS): its mtime and its place in
    the Kafka log."""
    return [
        field("mtime").alias("version_mtime"),
        F.col("partition").alias("version_partition"),
        F.col("offset").alias("version_offset"),
    ]
