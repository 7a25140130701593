"""chispa tests of the model's features: point-in-time history, no leakage, batches equal one pass."""

from __future__ import annotations

import json
import math

from chispa import assert_df_equality
from pyspark.sql import functions as F

from ml import features as X
from ml import model as M

T0 = 1_700_000_000_000  # Tuesday 2023-11-14 22:13:20 UTC
HOUR = 3_600_000


def rsvp(rsvp_id, *, member=1, group=10, event="e1", response="yes", mtime=T0, guests=0, event_time=None, venue=True):
    message = {
        "rsvp_id": rsvp_id,
        "mtime": mtime,
        "response": response,
        "guests": guests,
        "visibility": "public",
        "member": {"member_id": member, "member_name": "M", "photo": "p"},
        "event": {
            "event_id": event,
            "event_name": f"E {event}",
            "event_url": "u",
            "time": event_time or T0 + 48 * HOUR,
        },
        "group": {
            "group_id": group,
            "group_name": f"G {group}",
            "group_urlname": "g",
            "group_city": "New York",
            "group_country": "us",
            "group_state": "NY",
            "group_lat": 40.7,
            "group_lon": -74.0,
            "group_topics": [{"urlkey": "hiking", "topic_name": "Hiking"}],
        },
    }
    if venue:
        message["venue"] = {"venue_id": 5, "venue_name": "Park", "lat": 40.7, "lon": -74.0}
    return message


def messages(spark, *entries, start=0):
    """entries in arrival order; each gets arrival_ms = its position (across two partitions)."""
    rows = [(json.dumps(m), (start + i) % 2, start + i, start + i) for i, m in enumerate(entries)]
    return X.valid_messages(spark.createDataFrame(rows, "value string, partition int, offset long, arrival_ms long"))


def counts(df):
    return {r.rsvp_id: tuple(r[c] for c in X.HISTORY_COUNTS) for r in df.collect()}


def test_history_counts_each_other_rsvp_once_at_its_newest_answer_before_arrival(spark):
    msgs = messages(
        spark,
        rsvp(1, response="yes", mtime=T0 + 1500),
        rsvp(2, response="no", mtime=T0 + 2000, event="e2"),
        rsvp(1, response="no", mtime=T0 + 3000),  # rsvp 1 flips to no
        rsvp(1, response="yes", mtime=T0 + 1000),  # a stale resend: changes nothing
        rsvp(3, mtime=T0 + 4000),  # member 1's third RSVP
        rsvp(4, member=2, mtime=T0 + 5000, group=11, event="e3"),
    )
    features = X.rsvp_features(msgs)
    # (member yes, member no, group yes, group no, event yes, event no)
    assert counts(features) == {
        1: (0, 0, 0, 0, 0, 0),
        2: (1, 0, 1, 0, 0, 0),  # rsvp 1 stood at yes when rsvp 2 arrived
        3: (0, 2, 0, 2, 0, 1),  # rsvp 1 now no (the resend did not undo the flip), rsvp 2 no
        4: (0, 0, 0, 0, 0, 0),
    }
    rates = {r.rsvp_id: r.member_yes_rate for r in features.collect()}
    assert math.isclose(rates[2], (1 + X.PRIOR_RATE * X.PRIOR_WEIGHT) / (1 + X.PRIOR_WEIGHT))


def test_later_messages_do_not_change_an_earlier_rsvps_features(spark):
    """The leakage test: add later arrivals (a flip, a late message with an old mtime, new RSVPs)."""
    early = [rsvp(1, mtime=T0), rsvp(2, response="no", mtime=T0 + 10), rsvp(3, mtime=T0 + 20)]
    later = [
        rsvp(1, response="no", mtime=T0 + 30),
        rsvp(9, response="no", mtime=T0 - 10 * HOUR),  # arrives late, made before everything above
        rsvp(4, mtime=T0 + 40),
    ]
    before = X.rsvp_features(messages(spark, *early))
    after = X.rsvp_features(messages(spark, *early, *later)).filter(F.col("rsvp_id").isin(1, 2, 3))
    assert_df_equality(before, after, ignore_row_order=True, ignore_column_order=True)


def test_batches_with_the_scorers_state_give_the_features_of_one_pass(spark):
    entries = [
        rsvp(1, mtime=T0),
        rsvp(2, response="no", mtime=T0 + 10, event="e2"),
        rsvp(1, response="no", mtime=T0 + 20),
        rsvp(3, mtime=T0 + 30),
        rsvp(2, response="yes", mtime=T0 + 40, event="e2"),  # rsvp 2 flips in the second batch
        rsvp(4, mtime=T0 + 50, event="e2"),
        rsvp(5, member=7, mtime=T0 + 60),
    ]
    one_pass = X.rsvp_features(messages(spark, *entries))
    first, second = messages(spark, *entries[:3]), messages(spark, *entries[3:], start=3)
    state = X.newest_states(first)
    in_batches = X.rsvp_features(first, state.limit(0)).unionByName(X.rsvp_features(second, state))
    assert_df_equality(one_pass, in_batches, ignore_row_order=True, ignore_column_order=True, ignore_nullable=True)


def test_attributes_known_at_arrival(spark):
    msg = rsvp(1, guests=2, event_time=T0 + 3 * HOUR, venue=False)
    row = X.rsvp_features(messages(spark, msg)).first()
    assert row.guests == 2.0 and row.has_guests == 1.0
    assert math.isclose(row.lead_log_hours, math.log1p(3.0)) and row.lead_past == 0.0 and row.lead_unknown == 0.0
    # New York is about UTC-5 (longitude -74 / 15): 22:13 UTC is 17:13 local on a Tuesday
    assert math.isclose(row.local_hour_sin, math.sin(17 * 2 * math.pi / 24), abs_tol=1e-9)
    assert row.local_weekend == 0.0
    assert row.online == 1.0  # no venue
    assert row.country == "us" and row.topics == ["hiking"]


def test_an_rsvp_already_in_the_state_is_not_new(spark):
    state = X.newest_states(messages(spark, rsvp(1)))
    later = messages(spark, rsvp(1, response="no", mtime=T0 + 5), rsvp(2, mtime=T0 + 6), start=1)
    assert [r.rsvp_id for r in X.rsvp_features(later, state).collect()] == [2]


def test_metrics_of_a_perfect_ranking_and_of_a_constant(spark):
    rows = [(1.0, 0.9), (1.0, 0.8), (0.0, 0.3), (1.0, 0.7), (0.0, 0.1)]
    scored = spark.createDataFrame(rows, "label double, p_yes double")
    result = M.metrics(scored)
    assert result["roc_auc"] == 1.0 and result["pr_auc_no"] == 1.0
    expected_loss = -sum(math.log(p) if y else math.log(1 - p) for y, p in rows) / len(rows)
    assert math.isclose(result["log_loss"], expected_loss)
    assert math.isclose(result["brier"], sum((p - y) ** 2 for y, p in rows) / len(rows))
    assert sum(b["rows"] for b in result["calibration"]) == 5
    constant = M.metrics(scored.withColumn("p_yes", F.lit(0.6)))
    assert constant["roc_auc"] == 0.5


def test_the_one_rule_baseline_picks_the_feature_that_separates_the_answers(spark):
    rows = [(0.0 if i % 2 else 1.0, float(i % 2), 0.0) for i in range(40)]  # guests decide everything
    train = spark.createDataFrame(rows, "label double, has_guests double, online double")
    for column in ("lead_unknown", "lead_log_hours", "member_no", "member_yes", "event_no", "event_yes"):
        train = train.withColumn(column, F.lit(0.0))
    train = train.withColumn("country", F.lit("us"))
    majority, one_rule = M.fit_baselines(train)
    assert majority.rule is None and math.isclose(majority.default, 0.5)
    assert one_rule.rule == "has_guests"
    assert one_rule.rates["0.0"] > 0.9 and one_rule.rates["1.0"] < 0.1
