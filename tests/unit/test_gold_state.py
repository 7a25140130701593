"""Gold's decisions per Kafka partition (pipelines/gold/state.py), on pandas frames: the log-defined
watermark, which fact is counted, what it replaces, and what the state keeps. The state store itself is
exercised by the integration tests (tests/integration/test_gold.py)."""

from __future__ import annotations

import pandas as pd

from pipelines.gold.state import (
    BUCKET_BITS,
    COUNTED,
    IGNORED,
    LATE,
    MARK,
    REPLACED,
    CountedStates,
    bucket_of,
    bucket_value,
    decide_partition,
    to_buckets,
)

T0 = 1_700_000_000_000
LATENESS = 600_000


def facts(*rows, partition: int = 0) -> pd.DataFrame:
    """rows: (offset, rsvp_id, mtime, response)"""
    return pd.DataFrame(
        [
            {
                "rsvp_id": rsvp_id,
                "version_mtime": mtime,
                "version_partition": partition,
                "version_offset": offset,
                "response": response,
                "guests": 0,
                "country": "us",
                "state": None,
                "city": "NYC",
                "group_id": 1,
                "event_id": "e",
                "topics": ["a"],
                "kafka_timestamp": pd.Timestamp("2026-12-04", tz="UTC"),
            }
            for offset, rsvp_id, mtime, response in rows
        ]
    )


def kinds(decided) -> dict[int, str]:
    """offset -> the kind of the fact at that offset (counted, ignored or late)"""
    rows = decided.rows[decided.rows["kind"].isin([COUNTED, IGNORED, LATE])]
    return dict(zip(rows["version_offset"], rows["kind"], strict=True))


def test_lateness_follows_the_greatest_mtime_at_earlier_offsets_of_the_partition_not_the_batch():
    batch = facts((10, 1, T0 + 1_000_000, "yes"), (11, 2, T0 + 300_000, "yes"), (12, 3, T0 + 399_999, "yes"))
    decided = decide_partition(batch.iloc[::-1], None, lambda _: None, LATENESS)  # in any order: offsets decide
    # offset 11 is 700,000 behind offset 10, offset 12 600,001 behind: both late; the first is never late
    assert kinds(decided) == {10: COUNTED, 11: LATE, 12: LATE}
    late = decided.rows[decided.rows["kind"] == LATE]
    assert list(late["watermark_ms"]) == [T0 + 1_000_000 - LATENESS] * 2
    assert decided.max_mtime == T0 + 1_000_000
    assert set(decided.counted) == {1}, "late facts do not enter the state"


def test_the_greatest_mtime_before_the_batch_counts_and_the_state_keeps_the_greatest():
    decided = decide_partition(facts((5, 1, T0, "yes")), T0 + LATENESS + 1, lambda _: None, LATENESS)
    assert kinds(decided) == {5: LATE}
    assert decided.max_mtime == T0 + LATENESS + 1, "an older batch does not move the watermark back"
    (mark,) = decided.rows[decided.rows["kind"] == MARK].itertuples()
    assert (mark.version_partition, mark.version_offset, mark.version_mtime) == (0, 5, T0 + LATENESS + 1)


def test_only_a_newer_fact_is_counted_and_it_brings_back_the_state_it_replaces():
    state = {
        1: (T0, 0, 1, "yes", 2, "us", None, "NYC", 1, "e", ["a"]),
        2: (T0, 0, 2, "yes", 0, "us", None, "NYC", 1, "e", ["a"]),
    }
    batch = facts(
        (7, 1, T0 + 5, "no"),  # newer than the state: counted
        (8, 1, T0 + 1, "yes"),  # older than its batch sibling: ignored
        (9, 2, T0 - 1, "no"),  # older than the state: ignored
        (10, 3, T0, "yes"),  # first seen: counted
    )
    decided = decide_partition(batch, T0, state.get, LATENESS)
    assert kinds(decided) == {7: COUNTED, 8: IGNORED, 9: IGNORED, 10: COUNTED}
    replaced = decided.rows[decided.rows["kind"] == REPLACED]
    assert [(r.rsvp_id, r.version_offset, r.response, r.guests) for r in replaced.itertuples()] == [(1, 1, "yes", 2)]
    assert {rsvp_id: value[:4] for rsvp_id, value in decided.counted.items()} == {
        1: (T0 + 5, 0, 7, "no"),
        3: (T0, 0, 10, "yes"),
    }


def test_a_resend_of_what_is_counted_changes_nothing_and_every_fact_is_decided_once():
    state = {1: (T0, 0, 4, "yes", 0, "us", None, "NYC", 1, "e", ["a"])}
    decided = decide_partition(facts((4, 1, T0, "yes")), T0, state.get, LATENESS)  # the counted message again
    assert kinds(decided) == {4: IGNORED}
    assert decided.counted == {}
    assert (decided.rows["kind"] == REPLACED).sum() == 0


def test_missing_values_leave_the_decisions_as_nulls_not_nans():
    batch = facts((1, 1, T0, "yes"))
    batch.loc[0, "group_id"] = None
    decided = decide_partition(batch, None, lambda _: None, LATENESS)
    counted = decided.rows[decided.rows["kind"] == COUNTED].iloc[0]
    assert pd.isna(counted["group_id"]) and counted["state"] is None
    assert str(decided.rows["group_id"].dtype) == "Int64"
    assert decided.counted[1][8] is None, "the state keeps a missing group as None"


def value(mtime: int, offset: int, response: str = "yes") -> tuple:
    """A counted state value (STATE_VALUE order)."""
    return (mtime, 0, offset, response, 0, "us", None, "NYC", 1, "e", ["a"])


def test_counted_states_read_each_bucket_once_and_write_back_only_the_buckets_that_changed():
    near, far = 5 << BUCKET_BITS, 9 << BUCKET_BITS  # two buckets
    stored = {5: bucket_value({near: value(T0, 1), near + 1: value(T0, 2)}), 9: bucket_value({far: value(T0, 3)})}
    loads: list[int] = []

    def load(bucket):
        loads.append(bucket)
        return stored.get(bucket)

    states = CountedStates([near, near + 1, far, far, near + 2], load)
    assert sorted(loads) == [5, 9], "one read per bucket touched, however many of its RSVPs the batch holds"
    assert states.get(near) == value(T0, 1) and states.get(far) == value(T0, 3)
    assert states.get(near + 2) is None, "an RSVP not in its bucket has no state"
    states.set(near + 2, value(T0 + 1, 4))
    (write,) = list(states.writes())
    assert write == (5, bucket_value({near: value(T0, 1), near + 1: value(T0, 2), near + 2: value(T0 + 1, 4)}))


def test_counted_states_on_buckets_decide_as_a_plain_mapping_of_rsvps_does():
    plain = {1: value(T0, 1), 2: value(T0, 2)}
    stored = {bucket_of(1): bucket_value(plain)}
    batch = facts((7, 1, T0 + 5, "no"), (9, 2, T0 - 1, "no"), (10, 3, T0, "yes"))
    states = CountedStates(batch["rsvp_id"], stored.get)
    on_buckets, on_plain = (decide_partition(batch, T0, get, LATENESS) for get in (states.get, plain.get))
    pd.testing.assert_frame_equal(on_buckets.rows, on_plain.rows)
    assert on_buckets.counted == on_plain.counted


def test_a_per_rsvp_map_moves_into_buckets_and_what_a_bucket_already_holds_wins():
    per_rsvp = [((1,), value(T0, 1)), ((2,), value(T0, 2)), ((7 << BUCKET_BITS,), value(T0, 3))]
    newer = bucket_value({2: value(T0 + 9, 8, "no")})  # written after the map: the map's entry for 2 is stale
    moved = to_buckets(per_rsvp, {bucket_of(2): newer}.get)
    assert moved == {
        bucket_of(1): bucket_value({1: value(T0, 1), 2: value(T0 + 9, 8, "no")}),
        7: bucket_value({7 << BUCKET_BITS: value(T0, 3)}),
    }
