"""Gold on the real services: counts, late rows, flips and re-runs, checked against tests/expected_gold.py."""

from __future__ import annotations

import json
from datetime import UTC

import pytest
from pyspark.sql import functions as F

from lakehouse import catalogue
from lakehouse.layout import Layout
from pipelines.gold.job import GoldBatch
from pipelines.gold.transforms import AGGREGATES, DEFAULT_LATENESS_MS
from tests.expected_gold import expected_gold
from tests.helpers import consume_with_coordinates, produce
from tests.integration.lakehouse import gold_table, isolated, run_available_now

pytestmark = pytest.mark.integration


def gold_rows(spark, layout: Layout, table: str) -> set[tuple]:
    df = gold_table(spark, layout, table)
    if table == "late_rsvps":
        df = df.select("version_partition", "version_offset")
    return {tuple(row) for row in df.collect()}


def assert_gold_exact(spark, layout: Layout, records, lateness_ms: int = DEFAULT_LATENESS_MS) -> dict:
    expected = expected_gold(records, lateness_ms)
    for table in [aggregate.name for aggregate in AGGREGATES] + ["late_rsvps"]:
        assert gold_rows(spark, layout, table) == expected[table], table
    return expected


def counted_states(spark, layout: Layout):
    """What gold's state store holds (pipelines/gold/state.py): each RSVP's counted version, read from the
    query's checkpoint with Spark's state data source (the buckets, one row per RSVP in them)."""
    return (
        spark.read.format("statestore")
        .option("stateVarName", "counted_buckets")
        .load(layout.checkpoint("gold-rsvps"))
        .selectExpr("key.version_partition", "explode(user_map_value.entries) AS e")
        .select("version_partition", "e.*")
    )


def test_gold_counts_on_the_real_captures_equal_an_independent_computation(spark, real_run):
    _, layout, records = real_run
    expected = assert_gold_exact(spark, layout, records)
    ((_, yes, no, _),) = expected["rsvp_totals"]
    states = counted_states(spark, layout).count()
    assert yes + no == states, "every RSVP counts once"
    assert 3000 < states <= 3260  # 3,260 RSVPs; those only ever seen late are not counted
    assert len(expected["late_rsvps"]) > 0, "the captures hold late messages: the late table must see them"


def test_snapshots_rank_topics_and_list_top_groups_and_upcoming_events(spark, real_run):
    _, layout, _ = real_run
    read = lambda name: spark.read.format("delta").load(layout.table(catalogue.table("gold", name)))  # noqa: E731
    trends = read("topic_trends")
    assert trends.count() > 0
    per_hour = trends.groupBy("hour").agg(F.min("rank"), F.max("rank"), F.count(F.lit(1))).collect()
    assert all(low == 1 and high == n for _, low, high, n in per_hour), "ranks are 1..n within each hour"
    groups = read("top_groups_5min").collect()
    assert groups and [g.yes for g in groups] == sorted((g.yes for g in groups), reverse=True)
    as_of = read("top_groups_5min").first().as_of
    minute_counts = gold_table(spark, layout, "groups_by_minute").filter(
        (F.col("minute") > F.lit(as_of) - F.expr("INTERVAL 5 MINUTES")) & (F.col("minute") <= F.lit(as_of))
    )
    top = minute_counts.groupBy("group_id").agg(F.sum("yes").alias("yes")).orderBy(F.desc("yes")).first()
    assert groups[0].yes == top.yes


def rsvp(rsvp_id: int, mtime: int, response: str, guests: int = 0, *, city: str = "Berlin") -> bytes:
    return json.dumps(
        {
            "rsvp_id": rsvp_id,
            "mtime": mtime,
            "response": response,
            "guests": guests,
            "visibility": "public",
            "member": {"member_id": 7, "member_name": "Ada"},
            "event": {"event_id": "ev1", "event_name": "Talk", "event_url": "https://x/1", "time": mtime + 86_400_000},
            "group": {
                "group_id": 11,
                "group_name": "Py",
                "group_urlname": "py",
                "group_city": city,
                "group_country": "de",
                "group_lat": 52.5,
                "group_lon": 13.4,
                "group_topics": [{"urlkey": "python", "topic_name": "Python"}],
            },
        }
    ).encode()


def test_a_flip_moves_the_rsvp_from_yes_to_no_and_late_rows_are_listed_not_counted(stack, spark, unique):
    settings = isolated(stack, unique)
    t0 = 1_700_000_000_000  # 2023-11-14 22:13:20 UTC
    first = [rsvp(1, t0, "yes", 2), rsvp(2, t0 + 1_000, "yes"), rsvp(3, t0 + 2_000, "no")]
    produce(settings.kafka.bootstrap_servers, settings.kafka.topic("rsvps"), first, partition=0)
    gold_alone = {"mirror_to_postgres": False, "stages": ("gold",)}  # gold reads Kafka itself: silver adds nothing
    layout = run_available_now(spark, settings, **gold_alone)
    counts = lambda: gold_rows(spark, layout, "rsvps_by_region_minute")  # noqa: E731
    minute = lambda ms: F.timestamp_millis(F.lit(ms))  # noqa: E731
    m0 = spark.range(1).select(minute(t0 // 60_000 * 60_000)).first()[0]
    assert counts() == {(m0, "de", None, "Berlin", 2, 1, 2)}

    second = [
        rsvp(1, t0 + 5_000, "no"),  # a flip within the same minute
        rsvp(2, t0 + 1_000, "yes"),  # a byte-identical resend: counts once
        rsvp(4, t0 + 600_000 + 30_000, "yes"),  # ten and a half minutes on: moves the watermark
        rsvp(5, t0 + 3_000, "yes"),  # now more than 10 minutes behind: late
    ]
    produce(settings.kafka.bootstrap_servers, settings.kafka.topic("rsvps"), second, partition=0)
    run_available_now(spark, settings, **gold_alone)
    m10 = spark.range(1).select(minute((t0 + 630_000) // 60_000 * 60_000)).first()[0]
    assert counts() == {(m0, "de", None, "Berlin", 1, 2, 0), (m10, "de", None, "Berlin", 1, 0, 0)}
    late = spark.read.format("delta").load(layout.table(catalogue.GOLD_LATE_RSVPS)).collect()
    assert [(r.rsvp_id, r.lateness_ms) for r in late] == [(5, 630_000 - 3_000 - DEFAULT_LATENESS_MS)]
    assert gold_rows(spark, layout, "rsvp_totals") == {("rsvps", 2, 2, 0)}
    records = consume_with_coordinates(settings.kafka.bootstrap_servers, settings.kafka.topic("rsvps"), 7)
    assert_gold_exact(spark, layout, records)


def test_pipeline_metrics_and_freshness_cover_every_query_and_every_row(spark, real_run):
    _, layout, records = real_run
    metrics = spark.read.format("delta").load(layout.table(catalogue.GOLD_PIPELINE_METRICS))
    per_query = {r.query: r for r in metrics.groupBy("query").agg(F.sum("input_rows").alias("rows")).collect()}
    assert {q: r.rows for q, r in per_query.items() if q.endswith("rsvps")} == {
        "bronze-rsvps": len(records),
        "silver-rsvps": len(records),
        "gold-rsvps": len(records),
        "mirror-rsvps": len(records),
        "score-rsvps": len(records),
    }
    kafka_lag = metrics.filter(F.col("query") == "bronze-rsvps").agg(F.max("kafka_offsets_behind_max")).first()[0]
    assert kafka_lag is not None and kafka_lag >= 0
    freshness = spark.read.format("delta").load(layout.table(catalogue.GOLD_FRESHNESS))
    rows = {r.stage: r for r in freshness.groupBy("stage").agg(F.sum("rows").alias("rows"), F.min("p50_ms")).collect()}
    assert {stage: r.rows for stage, r in rows.items()} == {
        "silver": len(records),
        "postgres": len(records),
        "gold": len(records),
        "score": len(records),
    }
    assert freshness.filter("p50_ms <= 0 OR p95_ms < p50_ms OR max_ms < p95_ms").count() == 0


def test_a_gold_batch_that_crashed_after_its_state_moved_on_counts_once_when_the_query_runs_again(
    stack, spark, unique, monkeypatch
):
    """A crash inside a gold batch: the state store had taken the batch (a flip, a new RSVP) and the late rows
    had committed beside the counts, the counts had not. The query started again from its checkpoint redoes
    the batch from the state as it was before it, so the flip is neither lost nor taken back twice, and the
    late row is not listed twice."""
    settings = isolated(stack, unique)
    t0 = 1_700_000_000_000
    topic = settings.kafka.topic("rsvps")
    run = lambda: run_available_now(spark, settings, mirror_to_postgres=False, stages=("gold",))  # noqa: E731
    produce(settings.kafka.bootstrap_servers, topic, [rsvp(1, t0, "yes"), rsvp(2, t0 + 1_000, "yes")], partition=0)
    layout = run()
    second = [rsvp(1, t0 + 5_000, "no"), rsvp(3, t0 + 6_000, "no"), rsvp(4, t0 - 700_000, "yes")]  # 4 is late
    produce(settings.kafka.bootstrap_servers, topic, second, partition=0)

    def crash(*_args):
        raise RuntimeError("the counts append never committed")

    monkeypatch.setattr(GoldBatch, "_apply_counts", crash)
    with pytest.raises(Exception, match="the counts append never committed"):
        run()
    assert gold_rows(spark, layout, "rsvp_totals") == {("rsvps", 2, 0, 0)}, "the batch's counts did not commit"
    assert gold_table(spark, layout, "late_rsvps").count() == 1, "the late row committed beside them"

    monkeypatch.undo()
    run()  # the same batch again, from the checkpoint
    assert gold_rows(spark, layout, "rsvp_totals") == {("rsvps", 1, 2, 0)}
    assert gold_table(spark, layout, "late_rsvps").count() == 1, "a batch run again does not list its late rows twice"
    states = {r.rsvp_id: (r.response, r.version_mtime) for r in counted_states(spark, layout).collect()}
    assert states == {1: ("no", t0 + 5_000), 2: ("yes", t0 + 1_000), 3: ("no", t0 + 6_000)}
    assert_gold_exact(spark, layout, consume_with_coordinates(settings.kafka.bootstrap_servers, topic, 5))


def test_a_generation_whose_gold_streamed_from_bronze_is_refused_with_the_way_out(stack, unique):
    """Gold reads Kafka now; a checkpoint of the older gold query holds the bronze table's Delta offsets, which
    the Kafka source cannot continue from. The chain refuses it and names the replay; a Kafka checkpoint passes."""
    from common.store import Store
    from pipelines.gold.job import OldLayoutError, refuse_bronze_checkpoint

    settings = isolated(stack, unique)
    layout = Layout(settings.lakehouse_root, "g1")
    offsets = "g1/_checkpoints/gold-rsvps/offsets"
    metadata = '{"batchWatermarkMs":0,"batchTimestampMs":1764700000000,"conf":{}}'
    store = Store(settings)
    store.write(f"{offsets}/0", f'v1\n{metadata}\n{{"{settings.kafka.topic("rsvps")}":{{"0":40}}}}'.encode())
    refuse_bronze_checkpoint(settings, layout)  # Kafka's offsets: the query goes on

    delta_offset = '{"sourceVersion":1,"reservoirId":"0f1e","reservoirVersion":7,"index":-1,"isStartingVersion":false}'
    store.write(f"{offsets}/1", f"v1\n{metadata}\n{delta_offset}".encode())
    with pytest.raises(OldLayoutError, match=r"streamed from the bronze table.*make replay TO="):
        refuse_bronze_checkpoint(settings, layout)


def test_a_generation_whose_gold_kept_its_state_in_delta_is_refused_with_the_way_out(stack, unique):
    """Gold's state moved from Delta tables into its query's state store. A checkpoint of the older query has
    committed batches and no state store: continued, the state would start empty and count every RSVP
    again. The chain refuses it and names the replay; a checkpoint with its state store passes."""
    from common.store import Store
    from pipelines.gold.job import OldLayoutError, refuse_stateless_checkpoint

    settings = isolated(stack, unique)
    layout = Layout(settings.lakehouse_root, "g1")
    store = Store(settings)
    refuse_stateless_checkpoint(settings, layout)  # a new generation: nothing to refuse
    store.write("g1/_checkpoints/gold-rsvps/commits/0", b'v1\n{"nextBatchWatermarkMs":0}')
    with pytest.raises(OldLayoutError, match=r"kept its state in Delta tables.*make replay TO="):
        refuse_stateless_checkpoint(settings, layout)
    store.write("g1/_checkpoints/gold-rsvps/state/0/0/1.changelog", b"rocksdb")
    refuse_stateless_checkpoint(settings, layout)


def test_folding_the_counts_while_batches_append_keeps_every_count(stack, spark, unique):
    """The fold (slow path) rewrites the counts while gold batches keep appending (hot path): no append
    conflicts with it, none is lost or summed twice, and a last fold leaves one row per key."""
    import threading
    from datetime import datetime, timedelta

    from lakehouse.delta_io import BatchAppender
    from pipelines.gold.fold import fold_counts
    from pipelines.gold.job import ensure_gold_tables
    from pipelines.gold.schemas import COUNTS
    from pipelines.gold.transforms import count_view

    settings = isolated(stack, unique)
    layout = Layout.from_settings(settings)
    ensure_gold_tables(spark, layout)
    path = layout.table(catalogue.GOLD_COUNTS)
    m0 = datetime(2023, 11, 14, 22, 13, tzinfo=UTC)
    columns = COUNTS.fieldNames()

    def changes(batch: int) -> list[tuple]:  # group g gains batch+g yeses in its minute; group 0 flips to no
        rows = [("groups_by_minute", m0 + timedelta(minutes=g), g, batch + g, 0, 0) for g in (1, 2, 3)]
        rows.append(("groups_by_minute", m0, 0, 1 if batch % 2 == 0 else -1, 0 if batch % 2 == 0 else 1, 0))
        return [(a, m, None, None, None, None, None, g, None, None, y, n, gu, batch) for a, m, g, y, n, gu in rows]

    batches, failures = range(12), []

    def gold() -> None:
        try:
            appender = BatchAppender(spark)  # as gold appends
            for batch in batches:
                appender.append(spark.createDataFrame(changes(batch), COUNTS), path, batch)
        except BaseException as error:  # surfaced below
            failures.append(error)

    appender = threading.Thread(target=gold)
    appender.start()
    folds = []
    while appender.is_alive():
        folded = fold_counts(spark, layout)
        if folded:
            folds.append(folded)
    appender.join()
    assert not failures, failures
    assert folds and any(f.through_batch < batches[-1] for f in folds), "a fold ran while batches appended"
    fold_counts(spark, layout)

    expected = {}
    for batch in batches:
        for row in changes(batch):
            key = (row[columns.index("group_id")],)
            yes, no = expected.get(key, (0, 0))
            expected[key] = (yes + row[columns.index("yes")], no + row[columns.index("no")])
    view = count_view(spark.read.format("delta").load(path), "groups_by_minute")
    assert {(r.group_id,): (r.yes, r.no) for r in view.collect()} == {k: v for k, v in expected.items() if v != (0, 0)}
    table = spark.read.format("delta").load(path)
    assert table.count() == view.count(), "after the last fold, one row per key"
    assert {r.batch_id for r in table.select("batch_id").distinct().collect()} == {batches[-1]}
    rerun = spark.createDataFrame(changes(batches[-1]), COUNTS)
    assert not BatchAppender(spark).append(rerun, path, batches[-1]), "a restart finds its last batch in the fold"


def test_a_batch_is_appended_once_whether_it_runs_again_after_a_restart_or_after_a_failed_append(stack, spark, unique):
    """Gold's appends (delta_io.BatchAppender): a batch the table holds is not appended again, whether a new
    appender (a restarted query) or the same one (the batch run again after its append raised) meets it; an
    append that raised without committing is made when the batch runs again; and a batch after the ones an
    appender wrote is appended without asking the table."""
    from pyspark.errors import AnalysisException

    from lakehouse.delta_io import BatchAppender
    from pipelines.gold.schemas import WATERMARKS

    layout = Layout.from_settings(isolated(stack, unique))
    path = f"{layout.root}/{layout.generation}/scratch/appender_test"  # not a table of the catalogue
    spark.createDataFrame([], WATERMARKS).write.format("delta").save(path)

    def rows(batch: int):
        return spark.createDataFrame([(0, batch * 10, batch * 100, batch)], WATERMARKS)

    def batch_ids() -> list[int]:
        return sorted(r.batch_id for r in spark.read.format("delta").load(path).select("batch_id").collect())

    first = BatchAppender(spark)
    assert first.append(rows(0), path, 0) and first.lookups == 1, "its first batch is looked up, and appended"
    assert first.append(rows(1), path, 1) and first.append(rows(2), path, 2)
    assert first.lookups == 1, "the batches after it are appended without asking the table"

    restarted = BatchAppender(spark)  # the query restarted: its first batch is batch 2 again
    assert not restarted.append(rows(2), path, 2), "a restart's first batch, already committed, is skipped"
    assert restarted.append(rows(3), path, 3)

    broken = spark.createDataFrame([(3,)], "version_partition string")  # the append raises, commits nothing
    with pytest.raises(AnalysisException):
        restarted.append(broken, path, 4)
    assert restarted.append(rows(4), path, 4), "run again, the batch that never committed is appended"
    assert not restarted.append(rows(4), path, 4), "run again once more, it is not appended twice"
    assert restarted.lookups == 3
    assert batch_ids() == [0, 1, 2, 3, 4]


def test_a_generation_whose_counts_are_totals_merged_in_place_is_refused_with_the_way_out(stack, spark, unique):
    """Before the fold, counts were totals MERGEd in place (partitioned by aggregate alone): batches cannot
    append changes to them. The chain refuses such a generation and names the replay."""
    from delta.tables import DeltaTable

    from pipelines.gold.job import OldLayoutError, ensure_gold_tables
    from pipelines.gold.schemas import COUNTS

    settings = isolated(stack, unique)
    layout = Layout(settings.lakehouse_root, "g1")
    old = layout.table(catalogue.GOLD_COUNTS)
    DeltaTable.createIfNotExists(spark).location(old).addColumns(COUNTS).partitionedBy("aggregate").execute()
    with pytest.raises(OldLayoutError, match=r"counts as totals.*make replay TO="):
        ensure_gold_tables(spark, layout)
    ensure_gold_tables(spark, Layout(settings.lakehouse_root, "g2"))  # a new generation gets the new layout
    ensure_gold_tables(spark, Layout(settings.lakehouse_root, "g2"))  # and continues it


def test_each_gold_append_writes_one_file_per_table_partition(spark, real_run):
    """A gold batch is hundreds of rows: written by the default tasks it made one file per task and table
    partition (21 for the counts), and an auto compaction of them every batch. Each append writes one file
    per partition it touches: at most one per aggregate for the counts, one for the late rows and watermarks."""
    from delta.tables import DeltaTable

    _, layout, _ = real_run
    for table, most in {"counts": len(AGGREGATES), "late_rsvps": 1, "watermarks": 1}.items():
        history = DeltaTable.forPath(spark, layout.table(catalogue.table("gold", table))).history().collect()
        appends = [h for h in history if h.operation == "WRITE" and h.operationParameters.get("mode") == "Append"]
        assert appends, f"gold/{table} has no appends"
        files = [int(h.operationMetrics["numFiles"]) for h in appends]
        assert max(files) <= most, f"gold/{table}: files per append {files}"
