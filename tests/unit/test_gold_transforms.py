"""chispa tests of gold's pure transforms: signed count deltas, the snapshots (the state store's decisions:
test_gold_state.py)."""

from __future__ import annotations

from datetime import datetime

from chispa import assert_df_equality
from pyspark.sql import functions as F

from pipelines.gold import transforms
from pipelines.gold.schemas import COUNTS
from pipelines.gold.transforms import AGGREGATES

BY_MINUTE = next(a for a in AGGREGATES if a.name == "rsvps_by_region_minute")
BY_TOPIC = next(a for a in AGGREGATES if a.name == "topics_by_hour")
STATE_SCHEMA = (
    "rsvp_id long, version_mtime long, version_partition int, version_offset long, response string, guests int, "
    "country string, state string, city string, group_id long, event_id string, topics array<string>"
)
T0 = 1_700_000_000_000  # 2023-11-14 22:13:20 UTC
M0 = datetime(2023, 11, 14, 22, 13)


def states(spark, *rows):
    """rows: (rsvp_id, mtime, offset, response, guests, city, topics)"""
    full = [(i, m, 0, o, r, g, "us", "ny", city, 1, "e", topics) for i, m, o, r, g, city, topics in rows]
    return spark.createDataFrame(full, STATE_SCHEMA)


def test_a_flip_takes_the_yes_back_and_adds_a_no_in_the_new_minute(spark):
    old = states(spark, (1, T0, 1, "yes", 2, "NYC", ["a"]))
    new = states(spark, (1, T0 + 60_000, 2, "no", 0, "NYC", ["a"]))
    deltas = transforms.count_deltas(new, old, BY_MINUTE)
    expected = spark.createDataFrame(
        [(M0, "us", "ny", "NYC", -1, 0, -2), (datetime(2023, 11, 14, 22, 14), "us", "ny", "NYC", 0, 1, 0)],
        "minute timestamp, country string, state string, city string, yes long, no long, guests long",
    )
    assert_df_equality(deltas, expected, ignore_row_order=True, ignore_nullable=True)


def test_a_repeat_that_changes_nothing_counted_leaves_no_delta(spark):
    old = states(spark, (1, T0 + 500, 1, "yes", 0, "NYC", ["a", "b"]))
    new = states(spark, (1, T0 + 900, 2, "yes", 0, "NYC", ["a", "b"]))
    assert transforms.count_deltas(new, old, BY_MINUTE).count() == 0
    assert transforms.count_deltas(new, old, BY_TOPIC).count() == 0


def test_topics_count_each_topic_of_the_group_once(spark):
    new = states(spark, (1, T0, 1, "yes", 0, "NYC", ["a", "b", "a"]))
    empty = spark.createDataFrame([], STATE_SCHEMA)
    rows = {(r.urlkey, r.yes) for r in transforms.count_deltas(new, empty, BY_TOPIC).collect()}
    assert rows == {("a", 1), ("b", 1)}


def test_rank_change_compares_with_the_hour_before(spark):
    hours = spark.createDataFrame(
        [
            (datetime(2023, 1, 1, 10), "a", 5, 0),
            (datetime(2023, 1, 1, 10), "b", 3, 0),
            (datetime(2023, 1, 1, 11), "a", 1, 0),
            (datetime(2023, 1, 1, 11), "b", 4, 0),
            (datetime(2023, 1, 1, 11), "c", 2, 0),
        ],
        "hour timestamp, urlkey string, yes long, no long",
    )
    ranked = transforms.rank_change(hours).filter(F.col("hour") == datetime(2023, 1, 1, 11))
    assert {(r.urlkey, r.rank, r.rank_change) for r in ranked.collect()} == {("b", 1, 1), ("c", 2, None), ("a", 3, -2)}


def test_categories_by_hour_sums_the_groups_of_each_category_and_ranks_them(spark):
    minute = "minute timestamp, group_id long, yes long, no long, guests long"
    counts = spark.createDataFrame(
        [(M0, 1, 3, 0, 0), (M0, 2, 1, 1, 0), (M0, 3, 5, 0, 0), (M0.replace(hour=23), 3, 1, 0, 0)], minute
    )
    categories = spark.createDataFrame([(1, "Outdoors"), (2, "Outdoors")], "group_id long, category string")
    by_hour = transforms.categories_by_hour(counts, categories)  # group 3 has no category: "other"
    expected = spark.createDataFrame(
        [(datetime(2023, 11, 14, 22), "Outdoors", 4, 1), (datetime(2023, 11, 14, 22), "other", 5, 0),
         (datetime(2023, 11, 14, 23), "other", 1, 0)],
        "hour timestamp, category string, yes long, no long",
    )  # fmt: skip
    assert_df_equality(by_hour, expected, ignore_row_order=True, ignore_nullable=True)
    ranked = {
        (r.hour.hour, r.category): (r["rank"], r.rank_change)
        for r in transforms.rank_change(by_hour, key="category").collect()
    }
    assert ranked == {(22, "other"): (1, None), (22, "Outdoors"): (2, None), (23, "other"): (1, 0)}


def test_every_aggregate_goes_into_the_long_table_and_reads_back_as_its_own(spark):
    new = states(
        spark,
        (1, T0, 1, "yes", 2, "NYC", ["a", "b"]),
        (2, T0 + 90_000, 2, "yes", 0, "LA", None),  # no topics: counted everywhere but under topics
        (3, T0 + 3_600_000, 3, "no", 1, "NYC", ["b", "b"]),  # a topic listed twice counts once
    )
    old = states(spark, (1, T0 - 1, 0, "no", 0, "NYC", ["a"]))
    long = transforms.all_count_deltas(new, old, batch_id=7)
    assert long.columns == COUNTS.fieldNames()
    assert {r.aggregate for r in long.collect()} == {a.name for a in AGGREGATES}
    # each aggregate's rows, read back from the long table, are that aggregate's own deltas
    for aggregate in AGGREGATES:
        assert_df_equality(
            transforms.count_view(long, aggregate.name),
            transforms.count_deltas(new, old, aggregate),
            ignore_row_order=True,
            ignore_nullable=True,
        )
    # the keys an aggregate does not use are null in its rows
    totals = long.filter(F.col("aggregate") == "rsvp_totals").first()
    assert (totals.minute, totals.group_id, totals.stream, totals.yes, totals.no) == (None, None, "rsvps", 2, 0)


def test_a_count_is_the_sum_of_its_batches_rows_and_a_key_summing_to_zero_is_gone(spark):
    rows = [  # (aggregate, group_id, yes, no, guests, batch_id): three batches' changes and a folded row
        ("groups_by_minute", 1, 3, 0, 1, 4),  # folded through batch 4
        ("groups_by_minute", 1, 1, 0, 0, 5),
        ("groups_by_minute", 1, -1, 1, 0, 6),  # a flip: the yes taken back, a no added
        ("groups_by_minute", 2, 1, 0, 0, 5),
        ("groups_by_minute", 2, -1, 0, 0, 6),  # its only RSVP moved away
        ("groups_by_minute", None, 0, 2, 0, 5),  # a null key is a key like any other
        ("groups_by_minute", None, 0, 1, 0, 6),
        ("rsvp_totals", None, 9, 9, 9, 6),  # another aggregate: not summed in
    ]
    counts = spark.createDataFrame(
        [(a, M0, g, y, n, gu, b) for a, g, y, n, gu, b in rows],
        "aggregate string, minute timestamp, group_id long, yes long, no long, guests long, batch_id long",
    )
    view = transforms.count_view(counts, "groups_by_minute")
    assert view.columns == ["minute", "group_id", "yes", "no", "guests"]
    assert sorted((r.group_id or 0, r.yes, r.no, r.guests) for r in view.collect()) == [(0, 0, 3, 0), (1, 3, 1, 1)]
