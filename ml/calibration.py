"""Online calibration: the model's log-odds shifted by what the stream's recent answers say.

A model trained in one period is miscalibrated wherever the yes rate differs (72 % yes in the 2015
capture, 87 % in 2021). The stream tells the scorer, minutes later, what the answers were, so the scorer
refits one number as it goes: a shift of the model's log-odds, p = sigmoid(logit(p_model) + shift).

Exact under replay, whatever the micro-batches: everything is counted in the order of arrival.
- The RSVPs are numbered by their first message's arrival (`ordinal`, 0, 1, 2, ...) and cut into blocks of
  BLOCK. All RSVPs of block b get the shift of block b.
- Block b's shift is fitted on the RSVPs of the WINDOW_BLOCKS blocks before it that the same model version
  scored, each labelled with its answer as it stood when block b's first RSVP arrived (its newest message
  before that moment: later flips are not known yet). Block 0, and a block with no such RSVPs, get 0.
- The fit is the shift of largest posterior: the log loss of those answers plus a Gaussian prior on the
  shift (PRIOR_PRECISION), so a few answers move it a little and a few hundred decide it.

The same log always gives the same blocks, the same labels and the same shifts: a capture scored by
`meetup-score`, a leave-one-capture-out judge (ml/evaluate.py) and a replay agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from ml.features import ARRIVAL, history_rows, standing_version

BLOCK = 100  # RSVPs a shift is used for
WINDOW_BLOCKS = 5  # the shift is fitted on the answers of the 5 blocks (500 RSVPs) before
PRIOR_PRECISION = 1.0  # shift ~ Normal(0, 1): a 72 % -> 87 % change in the yes rate is a shift of about 1
EPS = 1e-6


@dataclass(frozen=True)
class Blocks:
    """How the RSVPs are cut into blocks and how hard the prior holds each block's shift (the module's docstring)."""

    block: int = BLOCK
    window_blocks: int = WINDOW_BLOCKS
    prior_precision: float = PRIOR_PRECISION

    def describe(self) -> dict[str, float | int]:
        return {"block": self.block, "window_blocks": self.window_blocks, "prior_precision": self.prior_precision}


DEFAULT = Blocks()


def fit_shift(logits: Iterable[float], labels: Iterable[float], prior_precision: float = PRIOR_PRECISION) -> float:
    """The shift s maximising sum(log-likelihood of labels under sigmoid(logit + s)) - prior_precision * s^2 / 2.

    Newton's method on a strictly concave function of one variable: a few steps reach machine precision.
    """
    z = np.asarray(list(logits), dtype=float)
    y = np.asarray(list(labels), dtype=float)
    shift = 0.0
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-(z + shift)))
        gradient = float(np.sum(y - p)) - prior_precision * shift
        curvature = float(np.sum(p * (1.0 - p))) + prior_precision
        step = gradient / curvature
        shift += step
        if abs(step) < 1e-12:
            break
    return shift


def logit(p: Column) -> Column:
    clipped = F.least(F.greatest(p, F.lit(EPS)), F.lit(1 - EPS))
    return F.log(clipped / (1 - clipped))


def sigmoid(z: Column) -> Column:
    return 1 / (1 + F.exp(-z))


def ordinals(firsts_df: DataFrame) -> DataFrame:
    """One row per RSVP (with the ARRIVAL columns of its first message) -> the same rows with `ordinal`, the
    RSVP's place in the order of first arrivals from 0. One window over all rows, in one partition on
    purpose: for a capture or a test, not for a stream (which counts on from its state)."""
    everything = Window.partitionBy(F.lit(0)).orderBy(*(F.col(c) for c in ARRIVAL))
    return firsts_df.withColumn("ordinal", (F.row_number().over(everything) - 1).cast("long"))


def block_starts(scored_df: DataFrame, settings: Blocks = DEFAULT) -> DataFrame:
    """(block, block_start): the arrival (a struct of ARRIVAL) of each block's first RSVP, among these rows
    (rsvp_id, ordinal, *ARRIVAL of the first message). Block 0 is left out: nothing is known before it."""
    firsts = scored_df.filter((F.col("ordinal") % settings.block == 0) & (F.col("ordinal") > 0))
    return firsts.select(
        (F.col("ordinal") / settings.block).cast("long").alias("block"),
        arrival().alias("block_start"),
    )


def message_versions(messages_df: DataFrame) -> DataFrame:
    """(rsvp_id, arrived, version): every valid message as a version of its RSVP, with when it arrived."""
    return history_rows(messages_df).select("rsvp_id", arrival().alias("arrived"), standing_version().alias("version"))


def state_versions(state_df: DataFrame) -> DataFrame:
    """(rsvp_id, arrived, version) of a scorer's state (ml/features.STATE): each RSVP's newest version before
    a batch, placed before every message of it."""
    before_all = F.struct(*(F.lit(-1).cast("long").alias(c) for c in ARRIVAL))
    return state_df.select("rsvp_id", before_all.alias("arrived"), standing_version().alias("version"))


def arrival() -> Column:
    """A row's place in the order of arrival, as one comparable struct."""
    return F.struct(*(F.col(c).cast("long").alias(c) for c in ARRIVAL))


def block_answers(
    scored_df: DataFrame, starts_df: DataFrame, versions_df: DataFrame, settings: Blocks = DEFAULT
) -> DataFrame:
    """The answers each block's shift is fitted on: (block, rsvp_id, model_version, logit, label).

    scored_df: (rsvp_id, ordinal, model_version, logit) of the RSVPs scored before the blocks of starts_df
    (block_starts; rows without a model version or a logit are left out). versions_df (message_versions):
    every version of those RSVPs that arrived before the blocks' starts, at least.
    """
    scored = scored_df.filter(F.col("model_version").isNotNull() & F.col("logit").isNotNull())
    own_block = F.floor(F.col("ordinal") / settings.block)
    window = scored.select(
        "rsvp_id",
        "model_version",
        "logit",
        F.explode(F.sequence(own_block + 1, own_block + settings.window_blocks)).alias("block"),
    ).join(starts_df, "block")
    known = window.join(versions_df, "rsvp_id").filter(F.col("arrived") < F.col("block_start"))
    return known.groupBy("block", "rsvp_id", "model_version", "logit").agg(
        F.max("version")["yes"].cast("double").alias("label")
    )


def fit_blocks(answers_df: DataFrame, settings: Blocks = DEFAULT) -> dict[tuple[int, str], dict[str, float]]:
    """(block, model_version) -> {"shift", "answers", "yes_rate"}, from block_answers' rows (collected:
    at most WINDOW_BLOCKS * BLOCK rows a block)."""
    grouped: dict[tuple[int, str], tuple[list[float], list[float]]] = {}
    for row in answers_df.select("block", "model_version", "logit", "label").collect():
        logits, labels = grouped.setdefault((int(row["block"]), row["model_version"]), ([], []))
        logits.append(row["logit"])
        labels.append(row["label"])
    return {
        key: {
            "shift": fit_shift(logits, labels, settings.prior_precision),
            "answers": float(len(labels)),
            "yes_rate": sum(labels) / len(labels),
        }
        for key, (logits, labels) in grouped.items()
    }


def shifts_column(shifts: Mapping[tuple[int, str], Mapping[str, float]], settings: Blocks = DEFAULT) -> Column:
    """The shift of each row's (block of `ordinal`, `model_version`), 0 where none was fitted."""
    if not shifts:
        return F.lit(0.0)
    table = F.create_map(
        *(x for (block, version), fit in shifts.items() for x in (F.lit(f"{block}/{version}"), F.lit(fit["shift"])))
    )
    key = F.concat_ws("/", F.floor(F.col("ordinal") / settings.block).cast("string"), F.col("model_version"))
    return F.coalesce(table[key], F.lit(0.0))


def calibrate(
    scored_df: DataFrame, messages_df: DataFrame, settings: Blocks = DEFAULT
) -> tuple[DataFrame, dict[tuple[int, str], dict[str, float]]]:
    """A pass over a whole log: scored_df (rsvp_id, ordinal, model_version, logit, *ARRIVAL) -> the same rows
    with `shift` and `p_calibrated`, and the fitted shifts."""
    starts = block_starts(scored_df, settings)
    shifts = fit_blocks(block_answers(scored_df, starts, message_versions(messages_df), settings), settings)
    shifted = scored_df.withColumn("shift", shifts_column(shifts, settings))
    return shifted.withColumn("p_calibrated", sigmoid(F.col("logit") + F.col("shift"))), shifts


def describe(shifts: Mapping[tuple[int, str], Mapping[str, float]]) -> list[dict[str, float | int | str]]:
    """The fitted shifts as records, in block order (for reports and the model's record)."""
    return [
        {"block": block, "model_version": version, **{k: round(v, 6) for k, v in fit.items()}}
        for (block, version), fit in sorted(shifts.items())
    ]
