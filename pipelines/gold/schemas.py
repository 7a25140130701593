"""Schemas of gold's own tables. The snapshot tables take the schema of the DataFrame that builds them."""

from __future__ import annotations

from pyspark.sql import types as T

from lakehouse.aggregates import COUNT_KEYS, MEASURES

_S, _I, _L, _TS = T.StringType(), T.IntegerType(), T.LongType(), T.TimestampType()


def _fields(*fields: tuple[str, T.DataType, bool]) -> T.StructType:
    return T.StructType([T.StructField(name, dtype, nullable) for name, dtype, nullable in fields])


VERSION = (("version_mtime", _L, False), ("version_partition", _I, False), ("version_offset", _L, False))

# an RSVP's version and what it counts: shared by the state and the late rows
RSVP_VERSION = (
    ("rsvp_id", _L, False),
    *VERSION,
    ("response", _S, False),
    ("guests", _I, False),
    ("country", _S, True),
    ("state", _S, True),
    ("city", _S, True),
)

RSVP_STATE = _fields(
    *RSVP_VERSION,
    ("group_id", _L, True),
    ("event_id", _S, True),
    ("topics", T.ArrayType(_S), True),
)

WATERMARKS = _fields(
    ("version_partition", _I, False),
    ("through_offset", _L, False),
    ("max_mtime", _L, False),
    ("batch_id", _L, False),
)

LATE_RSVPS = _fields(
    *RSVP_VERSION,
    ("watermark_ms", _L, False),
    ("lateness_ms", _L, False),
    ("batch_id", _L, False),
    ("recorded_at", _TS, False),
)

KEY_TYPES = {key: _TS if key in ("minute", "hour") else _L if key == "group_id" else _S for key in COUNT_KEYS}

# the long table of every count aggregate (aggregates.py); batch_id is the gold batch that appended a row, or
# the last batch a folded row sums (fold.py). Partitioned by both: a reader reads one aggregate's files, and a
# batch appends to partitions the fold does not touch.
COUNTS = _fields(
    ("aggregate", _S, False),
    *((key, dtype, True) for key, dtype in KEY_TYPES.items()),
    *((m, _L, False) for m in MEASURES),
    ("batch_id", _L, True),
)
COUNTS_PARTITIONS = ("aggregate", "batch_id")
