"""The Live page's "as of": how far behind Kafka the gold tables are, in words and a level (colour)."""

from __future__ import annotations

import pandas as pd

from app.as_of import BEHIND_S, STALLED_S, as_of

NOW = pd.Timestamp("2026-12-03 12:00:00", tz="UTC")


def ago(seconds: float) -> pd.Timestamp:
    return NOW - pd.Timedelta(seconds=seconds)


def test_a_running_chain_whose_newest_batch_waited_seconds_is_fresh():
    status = as_of({"p95_ms": 4_200, "visible_at": ago(3)}, alive_at=ago(1), now=NOW)
    assert status.level == "fresh"
    assert status.text == "Fresh: the newest RSVPs here were 4 s behind Kafka (landed 3 s ago)."
    assert (status.lag_s, status.landed_s) == (4.2, 3.0)


def test_a_batch_whose_rsvps_waited_longer_than_the_bound_is_behind():
    status = as_of({"p95_ms": (BEHIND_S + 95) * 1000, "visible_at": ago(2)}, alive_at=ago(2), now=NOW)
    assert status.level == "behind"
    assert status.text.startswith("Behind: the newest RSVPs here were 2 min behind Kafka")


def test_gold_not_seen_running_is_stalled_however_fresh_its_last_batch_was():
    status = as_of({"p95_ms": 1_000, "visible_at": ago(STALLED_S + 60)}, alive_at=ago(STALLED_S + 60), now=NOW)
    assert status.level == "stalled"
    assert status.text == (
        "Stalled: gold's query has not been seen running for 4 min; its last RSVPs were 1 s behind Kafka."
    )
    stopped = as_of({"p95_ms": 1_000, "visible_at": ago(5)}, alive_at=None, now=NOW)  # the chain said it stopped
    assert stopped.text == "Stalled: gold's query is not running; its last RSVPs were 1 s behind Kafka."


def test_a_quiet_stream_with_a_running_chain_is_fresh_and_says_it_is_quiet():
    status = as_of({"p95_ms": 2_000, "visible_at": ago(600)}, alive_at=ago(2), now=NOW)
    assert status.level == "fresh"
    assert status.text.endswith("; no new RSVPs for 10 min.")


def test_before_any_rsvp_reached_gold():
    assert as_of(None, alive_at=ago(5), now=NOW).level == "fresh"
    stopped = as_of(None, alive_at=None, now=NOW)
    assert stopped.level == "stalled" and "start make demo" in stopped.text


def test_naive_times_from_a_table_are_utc():
    naive = {"p95_ms": 1_000, "visible_at": ago(10).tz_localize(None)}
    status = as_of(naive, alive_at=ago(1).tz_localize(None), now=NOW)
    assert status.landed_s == 10.0
