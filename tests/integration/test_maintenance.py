"""Compaction keeps streaming-written tables small in files; vacuum removes what no version needs."""

from __future__ import annotations

import pytest
from delta.tables import DeltaTable
from pyspark.sql import functions as F

from lakehouse import catalogue
from lakehouse.layout import Layout
from pipelines import maintenance
from pipelines.chain import run_chain
from pipelines.stages import ChainOptions
from tests.helpers import capture_frames, produce
from tests.integration.lakehouse import isolated, s3_keys

pytestmark = pytest.mark.integration

MIN_FILES = 3


def added_files(commit) -> int:
    """Data files a commit added, whatever the operation calls them."""
    metrics = commit.operationMetrics or {}
    return sum(int(metrics.get(key) or 0) for key in ("numFiles", "numAddedFiles", "numTargetFilesAdded"))


def most_files_in_a_partition(spark, path: str) -> int:
    """The table's file count, or for a partitioned one (gold's counts) its largest partition's."""
    detail = DeltaTable.forPath(spark, path).detail().first()
    if not detail.partitionColumns:
        return maintenance.file_count(spark, path)
    files = spark.read.format("delta").load(path).select("_metadata.file_path", *detail.partitionColumns).distinct()
    return files.groupBy(*detail.partitionColumns).count().agg(F.max("count")).first()[0] or 0


@pytest.fixture
def compact_early(spark):
    """Auto compaction at 3 small files instead of 50, so a short run shows it."""
    key = "spark.databricks.delta.autoCompact.minNumFiles"
    before = spark.conf.get(key)
    spark.conf.set(key, str(MIN_FILES))
    yield
    spark.conf.set(key, before)


def test_a_streaming_append_compacts_its_small_files_as_it_goes(stack, spark, unique, compact_early):
    settings = isolated(stack, unique)
    layout = Layout.from_settings(settings)
    produce(settings.kafka.bootstrap_servers, settings.kafka.topic("rsvps"), capture_frames()[:300])
    run_chain(
        spark,
        settings,
        layout=layout,
        options=ChainOptions(
            stages=("bronze",), streams=("rsvps",), available_now=True, max_offsets_per_trigger=20, progress_every=3600
        ),
    )
    bronze = layout.table(catalogue.BRONZE_RSVPS)
    assert spark.read.format("delta").load(bronze).count() == 300
    history = DeltaTable.forPath(spark, bronze).history().collect()
    written = sum(added_files(h) for h in history if h.operation != "OPTIMIZE")
    assert written > 3 * MIN_FILES, "the stream wrote many small files"
    assert sum(1 for h in history if h.operation == "OPTIMIZE") >= 2, "and compacted them as it went"
    assert maintenance.file_count(spark, bronze) <= 2 * MIN_FILES
    # compaction is the table's own property, which every new table gets from the session's defaults
    assert properties(spark, bronze).get(catalogue.AUTO_COMPACT) == "true"


def properties(spark, path: str) -> dict[str, str]:
    return DeltaTable.forPath(spark, path).detail().first().properties


def test_every_table_compacts_as_the_catalogue_declares_gold_counts_by_the_fold_not_by_its_writer(spark, real_run):
    # Delta's auto compaction checks the table's files after every append: ~0.45 s on each gold batch for
    # nothing, as each batch's counts partitions hold one file; the fold sums them instead (gold/fold.py)
    _, layout, _ = real_run
    counts = layout.table(catalogue.GOLD_COUNTS)
    for path in maintenance.table_paths(spark, layout):
        wanted = "false" if path == counts else "true"
        assert properties(spark, path).get(catalogue.AUTO_COMPACT) == wanted, path
    # the session-wide switch would override every table's property (Delta's AutoCompact reads it first)
    assert spark.conf.get("spark.databricks.delta.autoCompact.enabled", None) is None


def test_a_table_an_older_chain_wrote_gets_the_compaction_the_catalogue_declares(stack, spark, unique):
    # an older chain turned auto compaction on for its whole session, so its tables carry no property
    layout = Layout.from_settings(isolated(stack, unique))
    counts, stats = layout.table(catalogue.GOLD_COUNTS), layout.table(catalogue.SILVER_BATCH_STATS)
    defaults = "spark.databricks.delta.properties.defaults.autoOptimize.autoCompact"
    spark.conf.unset(defaults)
    try:
        spark.range(3).write.format("delta").save(stats)
        spark.range(3).write.format("delta").option(catalogue.AUTO_COMPACT, "true").save(counts)
    finally:
        spark.conf.set(defaults, "true")
    assert catalogue.AUTO_COMPACT not in properties(spark, stats)
    assert sorted(maintenance.settle_compaction(spark, layout)) == sorted([counts, stats])
    assert properties(spark, stats)[catalogue.AUTO_COMPACT] == "true"
    assert properties(spark, counts)[catalogue.AUTO_COMPACT] == "false"
    assert maintenance.settle_compaction(spark, layout) == []  # settled: nothing to change the next time
    assert spark.read.format("delta").load(counts).count() == 3


@pytest.mark.slow
def test_streaming_writes_compact_their_small_files_so_file_counts_stay_bounded(stack, spark, unique, compact_early):
    settings = isolated(stack, unique)
    layout = Layout.from_settings(settings)
    topic, bootstrap = settings.kafka.topic("rsvps"), settings.kafka.bootstrap_servers
    frames = capture_frames()[:400]
    # Two rounds, as data keeps arriving: the second round's silver and gold batches read bronze's new
    # commits (a stream that starts from scratch reads bronze's compacted snapshot in one go instead).
    for start in (0, 200):
        produce(bootstrap, topic, frames[start : start + 200])
        run_chain(
            spark,
            settings,
            layout=layout,
            options=ChainOptions(
                streams=("rsvps",),
                available_now=True,
                mirror_to_postgres=False,
                max_offsets_per_trigger=50,
                max_files_per_trigger=2,
                progress_every=3600,
            ),
        )
    assert spark.read.format("delta").load(layout.table(catalogue.BRONZE_RSVPS)).count() == 400

    for path in maintenance.table_paths(spark, layout):
        # a writer compacts once MIN_FILES small files are there (per partition); one batch adds a few more
        assert most_files_in_a_partition(spark, path) <= 2 * MIN_FILES, path
    # MERGE rewrites the files it touches, so small tables stay compact by themselves; the append-heavy
    # ones show the compaction (gold's counts are compacted by the fold, not by their writer)
    for layer, name in (("bronze", "rsvps"), ("silver", "rsvps"), ("silver", "batch_stats")):
        history = DeltaTable.forPath(spark, layout.table(catalogue.table(layer, name))).history().collect()
        written = sum(added_files(h) for h in history if h.operation != "OPTIMIZE")
        assert written > 2 * MIN_FILES, f"{layer}/{name}: the run wrote too few files to show anything"
        assert any(h.operation == "OPTIMIZE" for h in history), f"{layer}/{name} was never compacted"


def test_vacuum_deletes_the_files_no_version_needs(stack, spark, unique):
    settings = isolated(stack, unique)
    path = f"{settings.lakehouse_root}/g1/gold/scratch"
    for start in range(0, 50, 10):
        spark.range(start, start + 10).repartition(2).write.format("delta").mode("append").save(path)
    maintenance.optimize(spark, path)
    assert maintenance.file_count(spark, path) == 1
    assert len(s3_keys(settings, "g1/gold/scratch/part-")) > 1

    spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "false")
    try:
        maintenance.vacuum(spark, path, retain_hours=0)
    finally:
        spark.conf.unset("spark.databricks.delta.retentionDurationCheck.enabled")
    assert len(s3_keys(settings, "g1/gold/scratch/part-")) == 1
    assert spark.read.format("delta").load(path).count() == 50


def test_every_table_a_whole_chain_run_writes_is_in_the_catalogue_that_maintenance_walks(spark, real_run):
    """Maintenance reaches what the catalogue declares; the chain's own tables are found in the object store,
    so a table added without a declaration fails here instead of going unvacuumed."""
    from lakehouse import catalogue

    settings, layout, _ = real_run
    written = set()
    for key in s3_keys(settings, f"{layout.generation}/"):
        parts = key.split(f"/{layout.generation}/", 1)[1].split("/")
        if len(parts) > 2 and parts[2] == "_delta_log" and parts[0] in ("bronze", "silver", "gold"):
            written.add((parts[0], parts[1]))
    declared = {(table.layer, table.name) for table in catalogue.TABLES}
    assert written - declared == set(), "tables the chain writes that maintenance would never reach"
    assert {("gold", "batch_phases"), ("gold", "scored_rsvps"), ("gold", "score_state")} <= written
    prefix = f"{layout.root}/{layout.generation}/"
    reached = {path.removeprefix(prefix) for path in maintenance.table_paths(spark, layout)}
    assert reached == {f"{layer}/{name}" for layer, name in written}
