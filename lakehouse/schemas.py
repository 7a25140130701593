"""Silver schemas: the messages as parsed (never inferred), and the 3NF tables they normalise into."""

from __future__ import annotations

from pyspark.sql import types as T

_S, _L, _I, _D = T.StringType(), T.LongType(), T.IntegerType(), T.DoubleType()


def _struct(*fields: tuple[str, T.DataType]) -> T.StructType:
    return T.StructType([T.StructField(name, data_type, True) for name, data_type in fields])


TOPIC = _struct(("urlkey", _S), ("topic_name", _S))

RSVP_MESSAGE = _struct(
    ("rsvp_id", _L),
    ("mtime", _L),
    ("response", _S),
    ("guests", _I),
    ("visibility", _S),
    (
        "member",
        _struct(
            ("member_id", _L),
            ("member_name", _S),
            ("photo", _S),
            (
                "other_services",
                _struct(
                    *(
                        (service, _struct(("identifier", _S)))
                        for service in ("facebook", "twitter", "linkedin", "tumblr", "flickr")
                    )
                ),
            ),
        ),
    ),
    ("event", _struct(("event_id", _S), ("event_name", _S), ("event_url", _S), ("time", _L))),
    ("venue", _struct(("venue_id", _L), ("venue_name", _S), ("lat", _D), ("lon", _D))),
    (
        "group",
        _struct(
            ("group_id", _L),
            ("group_name", _S),
            ("group_urlname", _S),
            ("group_city", _S),
            ("group_state", _S),
            ("group_country", _S),
            ("group_lat", _D),
            ("group_lon", _D),
            ("group_topics", T.ArrayType(TOPIC, True)),
        ),
    ),
)
RSVP_TOP_LEVEL_KEYS = tuple(field.name for field in RSVP_MESSAGE.fields)
SERVICES = ("facebook", "twitter", "linkedin", "tumblr", "flickr")

COMMENT_MESSAGE = _struct(
    ("id", _L),
    ("mtime", _L),
    ("comment", _S),
    ("visibility", _S),
    ("status", _S),
    ("table_name", _S),
    ("in_reply_to", _L),
    ("member", _struct(("member_id", _L), ("member_name", _S), ("photo", _S))),
    ("event", _struct(("event_id", _S), ("event_name", _S))),
    (
        "group",
        _struct(
            ("id", _L),
            ("name", _S),
            ("urlname", _S),
            ("city", _S),
            ("state", _S),
            ("country", _S),
            ("group_lat", _D),
            ("group_lon", _D),
            ("join_mode", _S),
            ("category", _struct(("id", _L), ("name", _S), ("shortname", _S))),
        ),
    ),
)
COMMENT_TOP_LEVEL_KEYS = tuple(field.name for field in COMMENT_MESSAGE.fields) + ("group_photo",)

PHOTO_MESSAGE = _struct(
    ("photo_id", _L),
    ("caption", _S),
    ("ctime", _L),
    ("mtime", _L),
    ("highres_link", _S),
    ("photo_link", _S),
    ("thumb_link", _S),
    ("member", _struct(("member_id", _L), ("name", _S))),
    (
        "photo_album",
        _struct(
            ("photo_album_id", _L),
            ("event", _struct(("id", _S), ("name", _S))),
            ("group", _struct(("id", _L), ("name", _S), ("urlname", _S), ("country", _S))),
        ),
    ),
)
PHOTO_TOP_LEVEL_KEYS = tuple(field.name for field in PHOTO_MESSAGE.fields)

QUARANTINE = T.StructType(
    [
        T.StructField("value", T.BinaryType(), True),
        T.StructField("key", _S, True),
        T.StructField("topic", _S, False),
        T.StructField("partition", _I, False),
        T.StructField("offset", _L, False),
        T.StructField("kafka_timestamp", T.TimestampType(), False),
        T.StructField("reason", _S, False),
        T.StructField("detail", _S, True),
        T.StructField("quarantined_at", T.TimestampType(), False),
    ]
)

BATCH_STATS = T.StructType(
    [
        T.StructField("query", _S, False),
        T.StructField("batch_id", _L, False),
        T.StructField("rows_in", _L, False),
        T.StructField("rows_valid", _L, False),
        T.StructField("rows_quarantined", _L, False),
        T.StructField("unknown_field_rows", _L, False),
        T.StructField("processed_at", T.TimestampType(), False),
    ]
)

# 3NF tables: key columns first. Every row carries the version of the message it came from
# (`mtime` and its Kafka partition/offset) so that an older message never overwrites a newer one.
VERSION_COLUMNS = ("version_mtime", "version_partition", "version_offset")

TABLE_KEYS: dict[str, tuple[str, ...]] = {
    "rsvps": ("rsvp_id",),
    "events": ("event_id",),
    "venues": ("venue_id",),
    "members": ("member_id",),
    "member_services": ("member_id", "service"),
    "groups": ("group_id",),
    "topics": ("urlkey",),
    "group_topics": ("group_id", "urlkey"),
    "event_comments": ("comment_id",),
    "photos": ("photo_id",),
}
# Each RSVP table's columns, its keys first, before the version columns: what silver writes and the PostgreSQL
# mirror copies. Parents before children: the order the mirror applies a batch in.
RSVP_COLUMNS: dict[str, tuple[str, ...]] = {
    "venues": ("venue_id", "venue_name", "lat", "lon"),
    "groups": (
        "group_id", "group_name", "group_urlname", "group_city", "group_state", "group_country", "group_lat",
        "group_lon",
    ),
    "topics": ("urlkey", "topic_name"),
    "members": ("member_id", "member_name", "photo"),
    "events": ("event_id", "group_id", "venue_id", "event_name", "event_url", "time"),
    "rsvps": ("rsvp_id", "event_id", "member_id", "mtime", "response", "guests", "visibility"),
    "member_services": ("member_id", "service", "identifier"),
    "group_topics": ("group_id", "urlkey"),
}  # fmt: skip
RSVP_TABLES = tuple(RSVP_COLUMNS)
