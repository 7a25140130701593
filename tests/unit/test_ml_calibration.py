"""Online calibration (ml/calibration.py): the shift's fit, and which answers each block is fitted on."""

from __future__ import annotations

import json
import math

from pyspark.sql import functions as F

from ml import calibration as C
from ml import features as X
from tests.unit.test_ml_features import T0, rsvp

SMALL = C.Blocks(block=2, window_blocks=2, prior_precision=1.0)


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_without_a_prior_the_shift_moves_the_mean_log_odds_to_the_answers_rate():
    # a model that says 0.5 to everyone, 80 % yes: the shift is logit(0.8)
    shift = C.fit_shift([0.0] * 10, [1.0] * 8 + [0.0] * 2, prior_precision=0.0)
    assert math.isclose(shift, logit(0.8), rel_tol=1e-9)


def test_a_calibrated_model_keeps_a_shift_near_zero_and_a_few_answers_move_it_little():
    z = [logit(0.8)] * 500
    assert abs(C.fit_shift(z, [1.0] * 400 + [0.0] * 100)) < 1e-9  # it already says 80 %, and 80 % say yes
    few = C.fit_shift([0.0] * 4, [1.0] * 4)  # four yes: without the prior the shift would be infinite
    many = C.fit_shift([0.0] * 400, [1.0] * 400)
    assert 0 < few < many and few < 2.0


def arrivals(spark, *entries):
    """Valid messages in arrival order, arrival_ms = position."""
    rows = [(json.dumps(m), 0, i, i) for i, m in enumerate(entries)]
    return X.valid_messages(spark.createDataFrame(rows, "value string, partition int, offset long, arrival_ms long"))


def scored(spark, messages, logits: dict[int, float], version="v1"):
    firsts = C.ordinals(X.first_messages(messages).select(F.col("msg.rsvp_id").alias("rsvp_id"), *X.ARRIVAL))
    table = F.create_map(*(x for k, v in logits.items() for x in (F.lit(k), F.lit(v))))
    return firsts.withColumn("logit", table[F.col("rsvp_id")]).withColumn("model_version", F.lit(version))


def answers_of(scored_df, messages):
    starts = C.block_starts(scored_df, SMALL)
    return C.block_answers(scored_df, starts, C.message_versions(messages), SMALL)


def test_each_block_is_fitted_on_the_blocks_before_it_with_the_answers_known_at_its_start(spark):
    # RSVPs 1..8 in blocks of 2: {1,2} {3,4} {5,6} {7,8}. RSVP 1 flips to no before block 2 starts (RSVP 5),
    # RSVP 3 flips to no only after block 3 has started (RSVP 7): block 2 still counts it as yes.
    log = [
        rsvp(1, mtime=T0 + 1),
        rsvp(2, mtime=T0 + 2),
        rsvp(3, mtime=T0 + 3),
        rsvp(4, mtime=T0 + 4, response="no"),
        rsvp(1, mtime=T0 + 5, response="no"),  # the flip of 1, before RSVP 5 arrives
        rsvp(5, mtime=T0 + 6),
        rsvp(6, mtime=T0 + 7),
        rsvp(7, mtime=T0 + 8),
        rsvp(3, mtime=T0 + 9, response="no"),  # the flip of 3, after RSVP 7: block 3 has started
        rsvp(8, mtime=T0 + 10),
    ]
    messages = arrivals(spark, *log)
    answers = answers_of(scored(spark, messages, {i: 0.1 * i for i in range(1, 9)}), messages)
    got = {(r.block, r.rsvp_id): r.label for r in answers.collect()}
    assert got == {
        (1, 1): 1.0, (1, 2): 1.0,                                  # block 1 starts at RSVP 3: 1 has not flipped yet
        (2, 1): 0.0, (2, 2): 1.0, (2, 3): 1.0, (2, 4): 0.0,        # block 2 starts at RSVP 5: 1's flip is known
        (3, 3): 1.0, (3, 4): 0.0, (3, 5): 1.0, (3, 6): 1.0,        # two blocks back only; 3's flip came later
    }  # fmt: skip


def test_a_block_is_fitted_only_on_answers_the_same_model_version_scored(spark):
    log = [rsvp(i, mtime=T0 + i) for i in range(1, 7)]
    messages = arrivals(spark, *log)
    mixed = scored(spark, messages, {i: 0.0 for i in range(1, 7)})
    mixed = mixed.withColumn("model_version", F.when(F.col("ordinal") < 2, "v1").otherwise("v2"))
    no_model = F.col("rsvp_id") == 6
    mixed = mixed.withColumn("logit", F.when(no_model, F.lit(None)).otherwise(F.col("logit")))
    got = {(r.block, r.model_version, r.rsvp_id) for r in answers_of(mixed, messages).collect()}
    assert got == {(1, "v1", 1), (1, "v1", 2), (2, "v1", 1), (2, "v1", 2), (2, "v2", 3), (2, "v2", 4)}


def test_a_pass_over_a_log_shifts_later_blocks_toward_the_answers_and_leaves_the_first_alone(spark):
    log = [rsvp(i, mtime=T0 + i, response="yes" if i % 5 else "no") for i in range(1, 13)]  # 80 % yes
    messages = arrivals(spark, *log)
    calibrated, shifts = C.calibrate(scored(spark, messages, {i: 0.0 for i in range(1, 13)}), messages, SMALL)
    rows = {r.rsvp_id: r for r in calibrated.collect()}
    assert rows[1].shift == rows[2].shift == 0.0 and rows[1].p_calibrated == 0.5  # block 0: nothing known yet
    assert all(rows[i].shift > 0 and rows[i].p_calibrated > 0.5 for i in range(3, 13))
    for (block, version), fit in shifts.items():
        assert version == "v1" and 1 <= block <= 5 and fit["answers"] <= SMALL.block * SMALL.window_blocks
        on_block = [r for r in rows.values() if r.ordinal // SMALL.block == block]
        assert all(math.isclose(r.shift, fit["shift"]) for r in on_block)
