"""The fold: gold's appended count changes summed into one row per key, on the slow path.

The hot path appends each batch's net change per key to `gold/counts` (aggregates.py), so the table grows
by a few thousand rows a minute and a reader sums more rows every batch. The table is partitioned by
`aggregate` and `batch_id`, and the fold replaces the partitions of the batches up to B (the greatest batch
id in one snapshot of the table) with their sums, one row per key, tagged B, in one overwrite:

    counts (batch_id <= B)  :=  sum per key of the rows of batches <= B       -- replaceWhere batch_id <= B

Readers see the same counts before and after (one commit: the rows and their sums never both, never
neither). Batches appended while the fold runs have ids above B, so they land in partitions the fold
neither read nor replaced: Delta checks conflicts by partition, and open-source Delta knows only the
Serializable isolation level, under which an append into a partition the fold had read would make the
fold fail. A fold that loses a race with another rewrite (an OPTIMIZE) committed nothing and is run again.
"""

from __future__ import annotations

from dataclasses import dataclass

from delta.tables import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from common.spark import one_row
from lakehouse import catalogue
from lakehouse.aggregates import COUNT_KEYS
from lakehouse.delta_io import retry_on_conflict
from lakehouse.layout import Layout
from pipelines.gold.transforms import net_counts


@dataclass(frozen=True)
class Folded:
    through_batch: int  # the greatest batch id summed
    rows_before: int  # rows of the snapshot folded
    rows_after: int  # one per key


def fold_counts(spark: SparkSession, layout: Layout) -> Folded | None:
    """Fold the counts of every batch so far into one row per key; None when there is nothing to fold
    (all rows are of one batch, or of the last fold)."""
    path = layout.table(catalogue.GOLD_COUNTS)
    return retry_on_conflict(lambda: _fold_once(spark, path))


def _fold_once(spark: SparkSession, path: str) -> Folded | None:
    version = one_row(DeltaTable.forPath(spark, path).history(1)).version
    snapshot = spark.read.format("delta").option("versionAsOf", version).load(path)
    stats = one_row(
        snapshot.agg(
            F.max("batch_id").alias("through"),
            F.count_distinct("batch_id").alias("batches"),
            F.count(F.lit(1)).alias("rows"),
        )
    )
    if stats.batches < 2:
        return None  # the rows of one batch (or of the last fold): nothing to sum
    through = stats.through
    sums = net_counts(snapshot, ("aggregate", *COUNT_KEYS)).withColumn("batch_id", F.lit(through).cast("long"))
    sums = sums.select(*snapshot.columns).localCheckpoint()  # computed once, from the pinned snapshot
    try:
        sums.write.format("delta").mode("overwrite").option("replaceWhere", f"batch_id <= {through}").save(path)
        return Folded(through, stats.rows, sums.count())
    finally:
        sums.unpersist()
