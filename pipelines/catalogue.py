"""Every Delta table of a generation, declared once: its layer, name, keys and what it holds.

Maintenance (OPTIMIZE, VACUUM, the chain's vacuum schedule) walks this list, and a test checks that every
table a whole chain run writes is in it, so a new table cannot silently go unmaintained.

    from pipelines.catalogue import TABLES, names
    names("gold")          # ['counts', 'watermarks', ...]
"""

from __future__ import annotations

from dataclasses import dataclass

from common.settings import STREAMS
from pipelines.gold.aggregates import COUNT_KEYS, COUNTS_TABLE
from pipelines.silver.schemas import TABLE_KEYS

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

    @property
    def auto_compact(self) -> str:
        """The value of its AUTO_COMPACT property, as Delta keeps it."""
        return str(self.writers_compact).lower()


def _declare() -> tuple[Table, ...]:
    bronze = [Table("bronze", s, ("partition", "offset"), f"the {s} stream, raw, append-only") for s in STREAMS]
    silver = [Table("silver", name, keys, "3NF, newest version per key") for name, keys in TABLE_KEYS.items()]
    silver += [
        Table("silver", "quarantine", ("partition", "offset"), "invalid messages with their reason"),
        Table("silver", "batch_stats", ("query", "batch_id"), "rows in, valid, quarantined per batch"),
    ]
    gold = [
        # the fold (gold/fold.py) sums it into one file per aggregate; auto compaction's check after every
        # append (a Spark job over the table's files) cost each gold batch ~0.45 s for nothing, as each
        # batch's partitions hold one file
        Table(
            "gold",
            COUNTS_TABLE,
            ("aggregate", *COUNT_KEYS, "batch_id"),
            "each batch's change per key (folded)",
            writers_compact=False,
        ),
        Table("gold", "watermarks", ("version_partition", "batch_id"), "greatest mtime per Kafka partition"),
        Table("gold", "late_rsvps", ("version_partition", "version_offset"), "messages later than the watermark"),
        Table("gold", "topic_trends", ("hour", "urlkey"), "snapshot: topics ranked per hour"),
        Table("gold", "top_groups_5min", ("group_id",), "snapshot: groups with the most yes, last 5 minutes"),
        Table("gold", "upcoming_events", ("event_id",), "snapshot: events filling fastest"),
        Table("gold", "category_trends", ("hour", "category"), "snapshot: categories ranked per hour"),
        Table("gold", "score_state", ("rsvp_id",), "the scoring stage's newest version of each RSVP"),
        Table("gold", "scored_rsvps", ("rsvp_id",), "predictions with the newest answer"),
        Table("gold", "score_calibration", ("block", "model_version"), "the scorer's online calibration per block"),
        Table("gold", "pipeline_metrics", ("query", "run_id", "batch_id"), "progress of every batch"),
        Table("gold", "freshness", ("stage", "query", "batch_id"), "Kafka append -> visible, per batch"),
        Table("gold", "batch_phases", ("query", "batch_id", "seq"), "where each batch's time went"),
    ]
    return (*bronze, *silver, *gold)


TABLES = _declare()


def table(layer: str, name: str) -> Table:
    """The declaration of one table."""
    return next(t for t in TABLES if (t.layer, t.name) == (layer, name))


def names(layer: str) -> list[str]:
    """The declared tables of one layer, in declaration order."""
    return [table.name for table in TABLES if table.layer == layer]
