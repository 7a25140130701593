"""Table maintenance: small files are compacted as they are written; old files are vacuumed on a schedule.

Streams write many small files (one set per micro-batch). Two mechanisms keep that bounded, neither of
which stops a stream:
- **compaction** is Delta's auto compaction (the table property `delta.autoOptimize.autoCompact`, on
  for every new table by `common.spark`'s defaults, with `spark.databricks.delta.autoCompact.minNumFiles`):
  right after a write commits, the writer itself rewrites the table's small files into one once there are
  `minNumFiles` of them. It runs in the writing query's own thread, so it never races that query's next
  MERGE; readers of bronze skip its commits (they change no data). A table the catalogue marks
  `writers_compact=False` (gold's counts, which the fold compacts) has it off; `settle_compaction` sets
  a table written by an older chain (which turned it on for the whole session) to what the catalogue says.
- **vacuum** deletes the files that no version within the retention period (default 7 days) still
  needs. The chain runs it every `--vacuum-every-minutes` in a background thread; VACUUM commits no data,
  so it does not conflict with the writers. `meetup-maintain` runs it (and a full OPTIMIZE) by hand.

meetup-maintain                               # OPTIMIZE + VACUUM every table of the current generation
meetup-maintain --generation g1 --no-optimize
meetup-maintain --retain-hours 1 --allow-short-retention   # only when no reader lags more than that
"""

from __future__ import annotations

import functools
import logging
import sys
import time

from delta.tables import DeltaTable
from pyspark.sql import SparkSession

from common import cli
from common.spark import SparkThread, one_row
from lakehouse import catalogue, generations
from lakehouse.delta_io import retry_on_conflict
from lakehouse.layout import Layout

log = logging.getLogger(__name__)

DEFAULT_RETAIN_HOURS = 168.0


def existing_tables(spark: SparkSession, layout: Layout) -> list[tuple[catalogue.Table, str]]:
    """Every declared table of the generation that exists, with its path."""
    declared = [(table, layout.table(table)) for table in catalogue.TABLES]
    return [(table, path) for table, path in declared if DeltaTable.isDeltaTable(spark, path)]


def table_paths(spark: SparkSession, layout: Layout) -> list[str]:
    """Every Delta table of the generation that exists."""
    return [path for _, path in existing_tables(spark, layout)]


def file_count(spark: SparkSession, path: str) -> int:
    """Data files in the table's current version."""
    return int(one_row(DeltaTable.forPath(spark, path).detail())["numFiles"])


def settle_compaction(spark: SparkSession, layout: Layout) -> list[str]:
    """Set each existing table's auto compaction property to what the catalogue declares, where it differs
    (tables an older chain created have none); returns the paths it changed."""
    changed = []
    for table, path in existing_tables(spark, layout):
        wanted = table.auto_compact
        if one_row(DeltaTable.forPath(spark, path).detail())["properties"].get(catalogue.AUTO_COMPACT) != wanted:
            statement = f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('{catalogue.AUTO_COMPACT}' = '{wanted}')"
            retry_on_conflict(functools.partial(spark.sql, statement))
            log.info("%s: auto compaction %s", path, "on" if table.writers_compact else "off")
            changed.append(path)
    return changed


def optimize(spark: SparkSession, path: str) -> None:
    retry_on_conflict(lambda: DeltaTable.forPath(spark, path).optimize().executeCompaction())


def vacuum(spark: SparkSession, path: str, retain_hours: float = DEFAULT_RETAIN_HOURS) -> None:
    DeltaTable.forPath(spark, path).vacuum(retain_hours)


def maintain(
    spark: SparkSession,
    layout: Layout,
    *,
    run_optimize: bool = True,
    retain_hours: float = DEFAULT_RETAIN_HOURS,
) -> dict[str, tuple[int, int]]:
    """OPTIMIZE (optional) and VACUUM every table; returns {path: (files before, files after)}."""
    result = {}
    settle_compaction(spark, layout)
    for path in table_paths(spark, layout):
        before = file_count(spark, path)
        started = time.perf_counter()
        if run_optimize:
            optimize(spark, path)
        vacuum(spark, path, retain_hours)
        result[path] = (before, file_count(spark, path))
        log.info("%s: %s -> %s files (%.1fs)", path, before, result[path][1], time.perf_counter() - started)
    return result


class VacuumSchedule(SparkThread):
    """Vacuums the generation's tables every `every_s` seconds until stopped (a daemon thread; a stop cancels
    the vacuum running, which the next run does again)."""

    def __init__(self, spark: SparkSession, layout: Layout, every_s: float, retain_hours: float = DEFAULT_RETAIN_HOURS):
        super().__init__(spark, "vacuum-schedule")
        self.layout, self.every_s, self.retain_hours = layout, every_s, retain_hours
        self.runs = 0

    def work(self) -> None:
        while not self.stopped.wait(self.every_s):
            try:
                settle_compaction(self.spark, self.layout)
                for path in table_paths(self.spark, self.layout):
                    if self.stopped.is_set():
                        return
                    vacuum(self.spark, path, self.retain_hours)
                self.runs += 1
            except Exception as error:  # a failed vacuum must never stop the chain; it is retried next time
                if self.stopped.is_set():
                    return  # cut by the stop
                log.warning("vacuum failed, will retry: %s", error)


@cli.command("meetup-maintain", generations.GenerationError)
def main(argv: list[str] | None = None) -> int:
    from common import health
    from common.spark import build_spark

    parser = cli.parser("meetup-maintain", __doc__)
    parser.add_argument("--generation", help="the generation to maintain (default: the one readers use)")
    parser.add_argument("--no-optimize", action="store_true", help="vacuum only")
    parser.add_argument(
        "--retain-hours", type=float, default=DEFAULT_RETAIN_HOURS,
        help="vacuum files no version younger than this needs",
    )  # fmt: skip
    parser.add_argument(
        "--allow-short-retention",
        action="store_true",
        help="allow --retain-hours under 168: a stream reading further behind than that would fail",
    )
    args = parser.parse_args(argv)
    settings = health.settings_for(["s3"])
    if args.retain_hours < DEFAULT_RETAIN_HOURS and not args.allow_short_retention:
        parser.error(
            f"--retain-hours {args.retain_hours} is under Delta's safety limit of 168 hours; "
            "add --allow-short-retention if no stream or reader lags further behind than that"
        )
    extra = {"spark.databricks.delta.retentionDurationCheck.enabled": "false"} if args.allow_short_retention else {}
    spark = build_spark(settings, "meetup-maintain", extra_conf=extra)
    spark.sparkContext.setLogLevel("WARN")
    maintain(
        spark,
        generations.layout(settings, args.generation),
        run_optimize=not args.no_optimize,
        retain_hours=args.retain_hours,
    )
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
