"""The Delta writes every layer makes, exactly once: append once per batch, newest-wins MERGE, a MERGE at
most once per batch, and a retry for a commit that lost a race.

Every streaming stage writes through these, so that exactly-once rests on four mechanisms in one place:
- Delta's transaction ids (`txnAppId`, `txnVersion`): a batch re-run after a crash finds its own
  (query, batch id) already committed and writes nothing (`append_once`, `idempotent_merge`);
- the batch id in the rows (`BatchAppender`: gold's appends and silver's batch stats): the same, looked up
  in the table only for a batch that may have been written before, instead of in Delta's transaction ids
  at every append;
- newest wins: a row is only replaced by a greater version, so applying a batch twice changes nothing
  (`merge_newest`);
- `retry_on_conflict`: a commit that lost to another (e.g. an OPTIMIZE by hand) committed nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from delta.exceptions import DeltaConcurrentModificationException
from delta.tables import DeltaMergeBuilder, DeltaTable
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from lakehouse.catalogue import AUTO_COMPACT, Table
from lakehouse.layout import Layout
from lakehouse.schemas import VERSION_COLUMNS

T = TypeVar("T")


def is_newer(source: str, target: str) -> str:
    """SQL condition: the source row's version is greater than the target row's."""
    s_m, s_p, s_o = (f"{source}.{c}" for c in VERSION_COLUMNS)
    t_m, t_p, t_o = (f"{target}.{c}" for c in VERSION_COLUMNS)
    return f"({s_m} > {t_m} OR ({s_m} = {t_m} AND ({s_p} > {t_p} OR ({s_p} = {t_p} AND {s_o} > {t_o}))))"


def retry_on_conflict(action: Callable[[], T], attempts: int = 5) -> T:
    """Run a Delta commit again when it lost a race with another commit (e.g. an OPTIMIZE by hand
    beside a stream's MERGE): the loser committed nothing, so running it again is safe."""
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except Exception as error:
            # DataFrameWriter.save raises Delta's conflicts as a bare Py4JJavaError, not as the Python class
            lost = isinstance(error, DeltaConcurrentModificationException) or "io.delta.exceptions.Concurrent" in str(
                error
            )
            if not lost or attempt == attempts:
                raise
            time.sleep(attempt)
    raise AssertionError("unreachable")


def append_once(df: DataFrame, path: str, app_id: str, batch_id: int, *, tasks: int | None = None) -> None:
    """Append, unless this (app_id, batch_id) was already committed to the table.

    tasks: write with at most this many tasks. Each writing task writes one file per table partition it has
    rows for, so a small batch written by the default tasks makes many tiny files (gold's counts: 21 files
    a batch, and an auto compaction of them in the same write, every batch); one task makes one file per
    partition."""
    if tasks is not None:
        df = df.coalesce(tasks)
    df.write.format("delta").mode("append").option("txnAppId", app_id).option("txnVersion", batch_id).save(path)


class BatchAppender:
    """Appends a streaming query's batches to Delta tables at most once each, known by the batch id its rows
    carry, for the hot path: it pays no transaction-id lookup on a batch that cannot be in the table.

    `append_once` asks Delta whether (app id, batch id) committed, and Delta answers from the table's whole
    state, which it rebuilds with a Spark job for every new table version: a one-row append took 1.41 s
    with the lookup and 0.38 s this way, alone on this machine (`make bench-delta-ops`), and gold appends to
    three tables a batch. Spark runs a query's batches in order and starts batch N+1 only once batch N is in
    the query's commit log, so a batch can already be in a table only if it is the first batch this
    appender writes there (a restart's first batch may be the one that crashed after its append) or a batch
    id it tried before (a batch run again after a failure, whether or not its append committed). Those are
    looked up in the table (a row with this batch id or a greater one: gold's fold tags its sums with the
    greatest batch id it summed, fold.py); every other batch is appended blind.

    Each table must have `column` (the batch id) in every row. Where queries share a table (silver's
    `batch_stats`, one row per batch of every stream's query), `rows_of` picks this query's rows out of it;
    otherwise only this query may write rows there. One appender per query: a new query (a restart) gets a
    new one.
    """

    def __init__(self, spark: SparkSession, column: str = "batch_id", rows_of: Column | None = None):
        self.spark = spark
        self.column = column
        self.rows_of = rows_of
        self._tried: dict[str, int] = {}  # table path -> the greatest batch id this appender tried there
        self.lookups = 0  # how many appends asked the table (tests read it)

    def append(self, df: DataFrame, path: str, batch_id: int, *, tasks: int | None = None) -> bool:
        """Append df as batch_id's rows, unless the table has them; True when it appended (see append_once
        for tasks)."""
        tried = self._tried.get(path)
        if tried is None or batch_id <= tried:
            self.lookups += 1
            if self.holds(path, batch_id):
                self._tried[path] = batch_id
                return False
        self._tried[path] = batch_id  # before the write: a write that raised may still have committed
        if tasks is not None:
            df = df.coalesce(tasks)
        df.write.format("delta").mode("append").save(path)
        return True

    def holds(self, path: str, batch_id: int) -> bool:
        """Whether the table has rows of this batch, or of a later one."""
        rows = self.spark.read.format("delta").load(path).filter(F.col(self.column) >= batch_id)
        if self.rows_of is not None:
            rows = rows.filter(self.rows_of)
        return not rows.limit(1).isEmpty()


def newest_merge(spark: SparkSession, path: str, rows_df: DataFrame, keys: tuple[str, ...]) -> DeltaMergeBuilder:
    """The newest-wins MERGE of rows (already newest per key) into the Delta table at path, not yet run:
    a row is replaced only by a greater version, so running it twice changes nothing."""
    on = " AND ".join(f"t.`{key}` = s.`{key}`" for key in keys)
    return (
        DeltaTable.forPath(spark, path)
        .alias("t")
        .merge(rows_df.alias("s"), on)
        .whenMatchedUpdateAll(condition=is_newer("s", "t"))
        .whenNotMatchedInsertAll()
    )


def ensure_tables(
    spark: SparkSession, layout: Layout, tables: dict[Table, StructType], partition_by: tuple[str, ...] = ()
) -> None:
    """Create each catalogue table that does not exist yet, with its schema (and partitioning), before any query
    writes to it: two queries creating one Delta table at the same moment would conflict. A table whose writers
    must not compact it (`Table.writers_compact`) is created with auto compaction off."""
    for entry, schema in tables.items():
        builder = DeltaTable.createIfNotExists(spark).location(layout.table(entry)).addColumns(schema)
        if partition_by:
            builder = builder.partitionedBy(*partition_by)
        if not entry.writers_compact:
            builder = builder.property(AUTO_COMPACT, entry.auto_compact)
        builder.execute()


def merge_newest(
    spark: SparkSession, path: str, rows_df: DataFrame, keys: tuple[str, ...], *, create: bool = True
) -> None:
    """Upsert rows (already newest per key) into the Delta table at path, never overwriting a newer version."""
    if create:
        DeltaTable.createIfNotExists(spark).location(path).addColumns(rows_df.schema).execute()
    retry_on_conflict(lambda: newest_merge(spark, path, rows_df, keys).execute())


def idempotent_merge(
    session: SparkSession, app_id: str, batch_id: int, merge: DeltaMergeBuilder, user_metadata: str | None = None
) -> None:
    """Run a Delta MERGE (a DeltaMergeBuilder) at most once per (app_id, batch_id) on its table; with
    user_metadata, its commit carries it (`userMetadata` in the table's history).

    Delta's transaction id for a MERGE is a session setting, so callers running MERGEs in parallel give
    each table a session of its own (`spark.newSession()`: sessions share the SparkContext, not settings).
    """
    settings = {
        "spark.databricks.delta.write.txnAppId": app_id,
        "spark.databricks.delta.write.txnVersion": str(batch_id),
        **({"spark.databricks.delta.commitInfo.userMetadata": user_metadata} if user_metadata else {}),
    }
    for key, value in settings.items():
        session.conf.set(key, value)
    try:
        retry_on_conflict(merge.execute)
    finally:
        for key in settings:
            session.conf.unset(key)
