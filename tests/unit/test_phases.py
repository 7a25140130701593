"""A batch's phases are recorded in order, with their time, even when a phase fails."""

import time
from datetime import UTC

import pytest

from pipelines.metrics import spark_phase_rows
from pipelines.phases import PhaseClock, PhaseRecorder
from tests.unit.test_metrics_listener import progress


def test_phases_are_recorded_in_order_with_their_time_once_the_batch_closes():
    recorder = PhaseRecorder()
    clock = PhaseClock("silver-rsvps", 7, recorder)
    with clock.phase("parse"):
        time.sleep(0.02)
    with clock.phase("merge"):
        pass
    clock.rows = 12
    assert recorder.drain() == []  # nothing until the batch closes
    clock.close()
    clock.close()  # closing twice records once
    rows = recorder.drain()
    assert [(r[0], r[1], r[2], r[3], r[6]) for r in rows] == [
        ("silver-rsvps", 7, 0, "parse", 12),
        ("silver-rsvps", 7, 1, "merge", 12),
    ]
    assert rows[0][5] >= 0.02 > rows[1][5] >= 0
    assert recorder.drain() == []


def test_a_phase_that_raises_is_still_recorded_and_the_error_goes_on():
    recorder = PhaseRecorder()
    clock = PhaseClock("gold-rsvps", 3, recorder)
    with pytest.raises(ValueError), clock.phase("count merges"):
        raise ValueError("conflict")
    clock.close()
    assert [r[3] for r in recorder.drain()] == ["count merges"]


def test_a_phase_name_used_twice_is_summed_in_the_batch_summary():
    clock = PhaseClock("q", 0, PhaseRecorder())
    for _ in range(2):
        with clock.phase("append"):
            time.sleep(0.01)
    assert list(clock.seconds()) == ["append"] and clock.seconds()["append"] >= 0.02


def test_sparks_own_parts_of_a_batch_become_phases_in_the_engines_order():
    rows = spark_phase_rows(progress("run-1", 5))  # durationMs: triggerExecution 5, addBatch 3
    assert [(r[0], r[1], r[3], r[5], r[6]) for r in rows] == [("score-rsvps", 5, "spark: addBatch", 0.003, 10)]


def test_a_batchs_freshness_per_stage_follows_from_its_append_times_and_when_each_stage_made_it_visible():
    from datetime import datetime, timedelta

    from pipelines.metrics import freshness_rows

    appended = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
    us = lambda seconds: int((appended + timedelta(seconds=seconds)).timestamp() * 1_000_000)  # noqa: E731
    stats = (40, [us(3), us(1), us(0)])  # median append at +3 s, 5th percentile at +1 s, earliest at +0 s
    gold_at, postgres_at = appended + timedelta(seconds=5), appended + timedelta(seconds=6)
    rows = freshness_rows(stats, "gold-rsvps", 9, {"gold": gold_at, "postgres": postgres_at})
    assert rows == [
        ("gold", "gold-rsvps", 9, 40, 2000, 4000, 5000, gold_at),
        ("postgres", "gold-rsvps", 9, 40, 3000, 5000, 6000, postgres_at),
    ]
    assert freshness_rows((0, None), "gold-rsvps", 10, {"gold": gold_at}) == [], "an empty batch records nothing"
