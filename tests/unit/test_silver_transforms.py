"""chispa tests of the pure bronze and silver transforms, on a few inline rows each."""

from __future__ import annotations

import json
from datetime import date, datetime

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from lakehouse import validation
from lakehouse.schemas import RSVP_COLUMNS, RSVP_MESSAGE, RSVP_TOP_LEVEL_KEYS, VERSION_COLUMNS
from pipelines.bronze.transforms import to_bronze
from pipelines.silver import mirror, transforms
from tests.helpers import capture_frames

REAL = capture_frames()
WITH_VENUE = next(f for f in REAL if b'"venue"' in f and b"other_services" in f)
NO_VENUE = next(f for f in REAL if b'"venue"' not in f)
T0 = datetime(2021, 9, 2, 12, 0, 0)
COORDINATES = "key string, topic string, partition int, offset long, kafka_timestamp timestamp"


def bronze_rows(spark, frames: list[bytes | None]):
    rows = [(frame, None, "meetup.rsvps", 0, offset, T0) for offset, frame in enumerate(frames)]
    return spark.createDataFrame(
        rows, "value binary, key string, topic string, partition int, offset long, kafka_timestamp timestamp"
    )


def edit(frame: bytes, **changes) -> bytes:
    record = json.loads(frame)
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        target = record
        for parent in parents:
            target = target[parent]
        if value is KeyError:
            del target[leaf]
        else:
            target[leaf] = value
    return json.dumps(record).encode()


def checked(spark, frames):
    parsed = validation.with_parsed(bronze_rows(spark, frames), RSVP_MESSAGE)
    return validation.with_unknown_field_count(
        validation.with_reason(parsed, validation.rsvp_rules()), RSVP_TOP_LEVEL_KEYS
    )


def test_to_bronze_keeps_the_record_and_dates_it_by_kafka_time(spark):
    kafka_df = spark.createDataFrame(
        [
            (b"k1", b'{"a":1}', "meetup.rsvps", 2, 7, datetime(2021, 9, 2, 23, 59, 59)),
            (None, None, "meetup.rsvps", 0, 8, T0),
        ],
        "key binary, value binary, topic string, partition int, offset long, timestamp timestamp",
    )
    bronze_df = to_bronze(kafka_df).drop("ingest_time")
    expected_df = spark.createDataFrame(
        [
            (b'{"a":1}', "k1", "meetup.rsvps", 2, 7, datetime(2021, 9, 2, 23, 59, 59), date(2021, 9, 2)),
            (None, None, "meetup.rsvps", 0, 8, T0, date(2021, 9, 2)),
        ],
        f"value binary, {COORDINATES}, ingest_date date",
    )
    assert_df_equality(bronze_df, expected_df, ignore_nullable=True)


def test_every_invalid_row_gets_the_reason_of_the_first_rule_it_breaks(spark):
    frames = [
        WITH_VENUE,
        WITH_VENUE[:100],
        b"\xff\xfe" + WITH_VENUE,
        edit(WITH_VENUE, rsvp_id=KeyError),
        edit(WITH_VENUE, guests="two"),
        edit(WITH_VENUE, response="maybe"),
        edit(WITH_VENUE, guests=-1),
        edit(WITH_VENUE, venue__venue_id=KeyError),
        edit(WITH_VENUE, event__time="tomorrow"),
        edit(WITH_VENUE, group__group_topics=[{"urlkey": "x"}]),
        edit(WITH_VENUE, mtime=12),
        WITH_VENUE[:-1] + b',"pad":"' + b"x" * 1_000_001 + b'"}',
        None,
        b"[1, 2]",
    ]
    result_df = checked(spark, frames).select("offset", "reason", "detail")
    expected_df = spark.createDataFrame(
        [
            (0, None, None),
            (1, "malformed_json", WITH_VENUE[:100].decode()),
            (2, "invalid_utf8", None),
            (3, "missing_field", "rsvp_id"),
            (4, "wrong_type", "guests"),
            (5, "bad_enum", "response=maybe"),
            (6, "out_of_range", "guests=-1"),
            (7, "missing_field", "venue.venue_id"),
            (8, "wrong_type", "event.time"),
            (9, "wrong_type", "group.group_topics[]"),
            (10, "out_of_range", "mtime=12"),
            (11, "oversized", f"bytes={len(frames[11])}"),
            (12, "malformed_json", None),
            (13, "malformed_json", "[1, 2]"),
        ],
        "offset long, reason string, detail string",
    )
    assert_df_equality(result_df, expected_df, ignore_nullable=True)


def test_checks_built_once_give_each_batch_its_own_reasons(spark):
    # a stage builds its Checks once and applies them to every micro-batch
    checks = validation.Checks(validation.rsvp_rules())
    batches = [
        [WITH_VENUE, edit(WITH_VENUE, guests=-1)],
        [edit(WITH_VENUE, response="maybe"), WITH_VENUE, b"[1]"],
    ]
    expected = [
        [(0, None, None), (1, "out_of_range", "guests=-1")],
        [(0, "bad_enum", "response=maybe"), (1, None, None), (2, "malformed_json", "[1]")],
    ]
    for frames, rows in zip(batches, expected, strict=True):
        parsed = validation.with_parsed(bronze_rows(spark, frames), RSVP_MESSAGE)
        result_df = checks.apply(parsed).select("offset", "reason", "detail")
        expected_df = spark.createDataFrame(rows, "offset long, reason string, detail string")
        assert_df_equality(result_df, expected_df, ignore_nullable=True)


def test_each_message_is_parsed_once_however_many_rules_read_it(spark):
    # every stage reads valid messages so: the checks, the filter, then the rows built from `msg`; Spark's
    # optimizer once copied the parse into each rule of the filter (85 parses a row)
    checks = validation.Checks(validation.rsvp_rules())
    valid = validation.filter_valid(
        checks.apply(validation.with_parsed(bronze_rows(spark, [WITH_VENUE]), RSVP_MESSAGE))
    )
    tables = transforms.rsvp_tables(valid, newest=False)
    for df in (valid, *tables.values()):
        plan = df._jdf.queryExecution().optimizedPlan().toString()
        assert plan.count("from_json(") == 1, plan
    assert valid.select("msg.rsvp_id").collect() == [(json.loads(WITH_VENUE)["rsvp_id"],)]


def test_unknown_top_level_fields_are_counted_not_fatal(spark):
    result_df = checked(spark, [WITH_VENUE, edit(WITH_VENUE, x_new=1, y_new={"a": 1})]).select(
        "offset", "reason", "unknown_fields"
    )
    expected_df = spark.createDataFrame([(0, None, 0), (1, None, 2)], "offset long, reason string, unknown_fields int")
    assert_df_equality(result_df, expected_df, ignore_nullable=True)


def test_quarantine_rows_keep_the_raw_value_and_kafka_coordinates(spark):
    quarantine_df = validation.to_quarantine(checked(spark, [WITH_VENUE, b"<html>"])).drop("quarantined_at")
    expected_df = spark.createDataFrame(
        [(b"<html>", None, "meetup.rsvps", 0, 1, T0, "malformed_json", "<html>")],
        f"value binary, {COORDINATES}, reason string, detail string",
    )
    assert_df_equality(quarantine_df, expected_df, ignore_nullable=True)


def test_every_rsvp_table_has_the_columns_the_schemas_declare_which_the_mirror_copies(spark):
    valid_df = validation.filter_valid(checked(spark, [WITH_VENUE, NO_VENUE]))
    for newest in (True, False):
        tables = transforms.rsvp_tables(valid_df, newest=newest)
        assert list(tables) == list(RSVP_COLUMNS)
        for name, df in tables.items():
            assert df.columns == [*RSVP_COLUMNS[name], *VERSION_COLUMNS], name
            assert list(mirror.TABLES[name].columns) == df.columns, name


def test_normalisation_puts_each_fact_in_its_table(spark):
    valid_df = validation.filter_valid(checked(spark, [WITH_VENUE, NO_VENUE]))
    tables = transforms.rsvp_tables(valid_df)
    with_venue, no_venue = json.loads(WITH_VENUE), json.loads(NO_VENUE)

    events_df = tables["events"].select("event_id", "group_id", "venue_id")
    expected_events = spark.createDataFrame(
        [
            (with_venue["event"]["event_id"], with_venue["group"]["group_id"], with_venue["venue"]["venue_id"]),
            (no_venue["event"]["event_id"], no_venue["group"]["group_id"], None),
        ],
        "event_id string, group_id long, venue_id long",
    )
    assert_df_equality(events_df, expected_events, ignore_row_order=True, ignore_nullable=True)
    assert tables["venues"].select("venue_id").collect() == [(with_venue["venue"]["venue_id"],)]

    services_df = tables["member_services"].select("member_id", "service", "identifier")
    expected_services = spark.createDataFrame(
        [
            (with_venue["member"]["member_id"], service, value["identifier"])
            for service, value in with_venue["member"]["other_services"].items()
        ],
        "member_id long, service string, identifier string",
    )
    assert_df_equality(services_df, expected_services, ignore_row_order=True, ignore_nullable=True)

    topics = {(t["urlkey"], t["topic_name"]) for m in (with_venue, no_venue) for t in m["group"]["group_topics"]}
    assert {tuple(r) for r in tables["topics"].select("urlkey", "topic_name").collect()} == topics
    rsvp = tables["rsvps"].filter(F.col("rsvp_id") == with_venue["rsvp_id"]).first()
    assert rsvp.mtime == datetime.utcfromtimestamp(with_venue["mtime"] / 1000)
    expected = (with_venue["event"]["event_id"], with_venue["member"]["member_id"], with_venue["response"])
    assert (rsvp.event_id, rsvp.member_id, rsvp.response, rsvp.guests) == (*expected, with_venue["guests"])


@pytest.mark.parametrize(
    ("versions", "winner"),
    [
        # the double-send: the repeat's mtime is cut to the second, so it is *older* and loses
        ([(1630585586663, 0, 10, "yes"), (1630585586000, 0, 11, "yes")], 10),
        # a flip with a later mtime wins, whatever the order of arrival
        ([(2000, 0, 12, "no"), (1000, 0, 11, "yes")], 12),
        # equal mtime: the later Kafka offset wins
        ([(1000, 1, 5, "yes"), (1000, 1, 6, "no")], 6),
        # a null-safe single version
        ([(1000, 2, 3, "yes")], 3),
    ],
)
def test_newest_per_key_follows_mtime_then_kafka_position(spark, versions, winner):
    rows_df = spark.createDataFrame(
        [(42, m, p, o, r) for m, p, o, r in versions] + [(7, 1, 0, 0, "yes")],
        "rsvp_id long, version_mtime long, version_partition int, version_offset long, response string",
    )
    newest_df = transforms.newest_per_key(rows_df, ("rsvp_id",)).select("rsvp_id", "version_offset")
    expected_df = spark.createDataFrame([(7, 0), (42, winner)], "rsvp_id long, version_offset long")
    assert_df_equality(newest_df, expected_df, ignore_row_order=True, ignore_nullable=True)
