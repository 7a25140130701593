"""Every Delta table of a generation, declared once: its layer, name, keys and what it holds.

A table is named only through its entry here: `Layout.table(catalogue.GOLD_FRESHNESS)` is its path, and
`table("silver", name)` looks a name up and refuses one that is not declared. Maintenance (OPTIMIZE,
VACUUM, the chain's vacuum schedule) walks `TABLES`, and a test checks that every table a whole chain run
writes is declared, so a new table cannot silently go unmaintained.

    from lakehouse import catalogue
    layout.table(catalogue.SILVER_RSVPS)     # '<root>/g1/silver/rsvps'
    catalogue.names("gold")                  # ['counts', 'watermarks', ...]
    catalogue.table("silver", "nope")        # UnknownTable: no silver table 'nope'; declared: rsvps, ...
"""

from __future__ import annotations

from dataclasses import dataclass

from common.settings import STREAMS
from lakehouse.aggregates import COUNT_KEYS, COUNTS_TABLE
from lakehouse.schemas import TABLE_KEYS

# Delta's table property for auto compaction (pipelines/maintenance.py): new tables get it on from the
# session's defaults (common/spark.py), and maintenance sets each table's to what its Table says
AUTO_COMPACT = "delta.autoOptimize.autoCompact"


@dataclass(frozen=True)
class Table:
    layer: str
    name: str
    keys: tuple[str, ...]
    what: str
    # whether its writers compact its small files right after they commit (Delta's auto compaction); off
    # where something else compacts it
    writers_compact: bool = True
    # a snapshot: rewritten whole by the chain's snapshot rounds (not by a query's batches), so a reader
    # meets it only after the first round
    snapshot: bool = False

    @property
    def auto_compact(self) -> str:
        """The value of its AUTO_COMPACT property, as Delta keeps it."""
        return str(self.writers_compact).lower()


class UnknownTable(KeyError):
    """A layer and name that the catalogue does not declare."""

    def __str__(self) -> str:
        return str(self.args[0])


def _silver(name: str, what: str = "3NF, newest version per key") -> Table:
    return Table("silver", name, TABLE_KEYS[name], what)


BRONZE_RSVPS = Table("bronze", "rsvps", ("partition", "offset"), "the rsvps stream, raw, append-only")
BRONZE_EVENT_COMMENTS = Table("bronze", "event_comments", ("partition", "offset"), "the event_comments stream, raw")
BRONZE_PHOTOS = Table("bronze", "photos", ("partition", "offset"), "the photos stream, raw, append-only")

SILVER_RSVPS = _silver("rsvps")
SILVER_EVENTS = _silver("events")
SILVER_VENUES = _silver("venues")
SILVER_MEMBERS = _silver("members")
SILVER_MEMBER_SERVICES = _silver("member_services")
SILVER_GROUPS = _silver("groups")
SILVER_TOPICS = _silver("topics")
SILVER_GROUP_TOPICS = _silver("group_topics")
SILVER_EVENT_COMMENTS = _silver("event_comments")
SILVER_PHOTOS = _silver("photos")
SILVER_QUARANTINE = Table("silver", "quarantine", ("partition", "offset"), "invalid messages with their reason")
SILVER_BATCH_STATS = Table("silver", "batch_stats", ("query", "batch_id"), "rows in, valid, quarantined per batch")

# the fold (pipelines/gold/fold.py) sums it into one file per aggregate; auto compaction's check after every
# append (a Spark job over the table's files) cost each gold batch ~0.45 s for nothing, as each batch's
# partitions hold one file
GOLD_COUNTS = Table(
    "gold", COUNTS_TABLE, ("aggregate", *COUNT_KEYS, "batch_id"), "each batch's change per key (folded)",
    writers_compact=False,
)  # fmt: skip
GOLD_WATERMARKS = Table("gold", "watermarks", ("version_partition", "batch_id"), "greatest mtime per Kafka partition")
GOLD_LATE_RSVPS = Table(
    "gold", "late_rsvps", ("version_partition", "version_offset"), "messages later than the watermark"
)
GOLD_TOPIC_TRENDS = Table("gold", "topic_trends", ("hour", "urlkey"), "topics ranked per hour", snapshot=True)
GOLD_TOP_GROUPS = Table(
    "gold", "top_groups_5min", ("group_id",), "groups with the most yes, last 5 minutes", snapshot=True
)
GOLD_UPCOMING_EVENTS = Table("gold", "upcoming_events", ("event_id",), "events filling fastest", snapshot=True)
GOLD_CATEGORY_TRENDS = Table(
    "gold", "category_trends", ("hour", "category"), "categories ranked per hour", snapshot=True
)
GOLD_SCORE_STATE = Table("gold", "score_state", ("rsvp_id",), "the scoring stage's newest version of each RSVP")
GOLD_SCORED_RSVPS = Table("gold", "scored_rsvps", ("rsvp_id",), "predictions with the newest answer")
GOLD_SCORE_CALIBRATION = Table(
    "gold", "score_calibration", ("block", "model_version"), "the scorer's online calibration per block"
)
GOLD_PIPELINE_METRICS = Table("gold", "pipeline_metrics", ("query", "run_id", "batch_id"), "progress of every batch")
GOLD_FRESHNESS = Table("gold", "freshness", ("stage", "query", "batch_id"), "Kafka append -> visible, per batch")
GOLD_BATCH_PHASES = Table("gold", "batch_phases", ("query", "batch_id", "seq"), "where each batch's time went")

TABLES: tuple[Table, ...] = tuple(entry for entry in list(globals().values()) if isinstance(entry, Table))
assert {t.name for t in TABLES if t.layer == "bronze"} == set(STREAMS), "a bronze table per stream"
assert {t.name for t in TABLES if t.layer == "silver"} >= set(TABLE_KEYS), "a silver table per 3NF table"


def table(layer: str, name: str) -> Table:
    """The declaration of one table; a name that is not declared is refused."""
    for entry in TABLES:
        if (entry.layer, entry.name) == (layer, name):
            return entry
    raise UnknownTable(f"no {layer} table {name!r} in the catalogue; declared: {', '.join(names(layer)) or 'none'}")


def names(layer: str) -> list[str]:
    """The declared tables of one layer, in declaration order."""
    return [entry.name for entry in TABLES if entry.layer == layer]


def bronze(stream: str) -> Table:
    """The bronze table of a stream."""
    return table("bronze", stream)


def silver(name: str) -> Table:
    """A silver table by name (the 3NF tables are also iterated by name, from `schemas.TABLE_KEYS`)."""
    return table("silver", name)


def gold(name: str) -> Table:
    """A gold table by name."""
    return table("gold", name)
