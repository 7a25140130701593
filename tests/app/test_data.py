"""The app's reads: only the files that can hold the answer are read, and the answer is the whole table's."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from app import queries, reader
from common.settings import load_settings
from lakehouse import catalogue
from lakehouse.aggregates import COUNTS_TABLE, long_table
from tests.app.conftest import H0


def append(root, name: str, df: pd.DataFrame, mode: str = "append") -> None:
    from deltalake import write_deltalake

    write_deltalake(str(root / "g1" / "gold" / name), df, mode=mode)


def feed(ids: range, at) -> pd.DataFrame:
    return pd.DataFrame({"rsvp_id": list(ids), "scored_at": at, "rsvp_time": [H0 + timedelta(seconds=i) for i in ids]})


@pytest.fixture
def lh(empty_lake):
    return reader.Lakehouse(load_settings())


def test_newest_holds_the_true_top_rows_with_their_ties_across_files(empty_lake, lh):
    # five commits, one file each; ties on scored_at across the last two files (one batch time)
    for batch in range(5):
        append(
            empty_lake, "scored_rsvps", feed(range(batch * 10, batch * 10 + 10), H0 + timedelta(minutes=min(batch, 3)))
        )
    whole = pd.concat([feed(range(b * 10, b * 10 + 10), H0 + timedelta(minutes=min(b, 3))) for b in range(5)])
    got = lh.newest(catalogue.GOLD_SCORED_RSVPS, "scored_at", 15)
    expected = whole[whole["scored_at"] >= whole["scored_at"].nlargest(15).min()]
    assert sorted(got["rsvp_id"]) == sorted(expected["rsvp_id"])  # all 20 rows of the tied batch time
    assert len(got) == 20  # and not the older files


def test_newest_reads_everything_when_fewer_rows_than_asked(empty_lake, lh):
    append(empty_lake, "scored_rsvps", feed(range(3), H0))
    assert sorted(lh.newest(catalogue.GOLD_SCORED_RSVPS, "scored_at", 20)["rsvp_id"]) == [0, 1, 2]


def test_since_newest_keeps_the_span_before_the_largest_value(empty_lake, lh):
    for minute in range(6):
        append(empty_lake, "scored_rsvps", feed(range(minute, minute + 1), H0 + timedelta(minutes=minute)))
    got = lh.since_newest(catalogue.GOLD_SCORED_RSVPS, "scored_at", pd.Timedelta(minutes=2))
    assert sorted(got["rsvp_id"]) == [3, 4, 5]


def test_a_kept_table_sees_new_commits_and_a_recreated_table(empty_lake, lh):
    append(empty_lake, "scored_rsvps", feed(range(2), H0))
    assert len(lh.table(catalogue.GOLD_SCORED_RSVPS)) == 2
    append(empty_lake, "scored_rsvps", feed(range(2, 5), H0))
    assert len(reader.Lakehouse(load_settings()).table(catalogue.GOLD_SCORED_RSVPS)) == 5  # the next page run
    append(empty_lake, "scored_rsvps", feed(range(1), H0), mode="overwrite")
    assert len(reader.Lakehouse(load_settings()).table(catalogue.GOLD_SCORED_RSVPS)) == 1


def append_counts(root, name: str, df: pd.DataFrame) -> None:
    from deltalake import write_deltalake

    write_deltalake(str(root / "g1" / "gold" / COUNTS_TABLE), long_table({name: df}), mode="append",
                    partition_by=["aggregate"])  # fmt: skip


def test_the_rate_chart_sums_the_last_minutes_of_stream_time(empty_lake, lh):
    for minute in range(10):
        append_counts(empty_lake, "rsvps_by_region_minute", pd.DataFrame(
            {"minute": [H0 + timedelta(minutes=minute)] * 2, "country": ["us", "gb"], "state": None, "city": None,
             "yes": [1, 2], "no": [0, 1], "guests": 0}
        ))  # fmt: skip
    # another aggregate of the same long table, with later minutes: "newest" is the aggregate's own
    append_counts(empty_lake, "groups_by_minute", pd.DataFrame(
        {"minute": [H0 + timedelta(minutes=50)], "group_id": [7], "yes": [5], "no": [0], "guests": [0]}
    ))  # fmt: skip
    rate = queries.rate_per_minute(lh, minutes=3)
    assert list(rate["minute"]) == [H0 + timedelta(minutes=m) for m in (7, 8, 9)]
    assert list(rate["yes"]) == [3, 3, 3] and list(rate["no"]) == [1, 1, 1]


def test_batch_phases_are_mean_seconds_per_batch_in_batch_order_without_the_double_counted_addbatch(lake):
    phases = queries.batch_phases(reader.Lakehouse(load_settings()))
    got = [(r.query, r.phase, r.seconds, r.batches) for r in phases.itertuples()]
    assert got == [
        ("bronze-rsvps", "spark: addBatch", 0.5, 1),  # Spark's part is all there is of a bronze batch
        ("silver-rsvps", "parse and validate", 2.0, 2),  # (1 + 3) / 2 batches
        ("silver-rsvps", "merge", 5.0, 2),  # (4 + 6) / 2; silver's addBatch holds both, so it is left out
    ]


def test_counts_sum_the_rows_of_a_key_over_batches_and_leave_out_keys_that_sum_to_zero(empty_lake, lh):
    minute = H0 + timedelta(minutes=1)

    def batch(groups: list, yes: list, no: list) -> None:  # one gold batch's net changes
        append_counts(empty_lake, "groups_by_minute", pd.DataFrame(
            {"minute": [minute] * len(groups), "group_id": groups, "yes": yes, "no": no, "guests": 0}
        ))  # fmt: skip

    batch([1, 2], [2, 1], [0, 0])
    batch([1, 2], [-1, -1], [1, 0])  # group 1: a flip; group 2: its only RSVP moved away
    df = lh.counts("groups_by_minute")
    assert df[["group_id", "yes", "no"]].values.tolist() == [[1, 1, 1]]
    assert lh.counts("groups_by_minute", ["minute", "yes"]).values.tolist() == [[pd.Timestamp(minute), 1]]
