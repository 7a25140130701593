"""Benchmark: how much a looping replay lets the model recall its previous pass.

    .venv/bin/python -m bench.loop_recall        # about 2 minutes, no service needed

The demo loops the captures. If a pass brought the same people to the same events of the same groups, the
model's history features (each member's, group's and event's earlier answers) would recall the previous
pass's answers. Two passes of the 2021 capture go through the model's own feature code in one pass over
the log; a logistic regression is fitted on the first pass and scored on the second, for each way of
renewing the ids between passes (ingest/frames.py). Prints ROC AUC on the second pass; writes
bench/results/loop_recall.json and .md.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from itertools import islice
from pathlib import Path
from tempfile import TemporaryDirectory

from bench.common import write_results
from ingest import frames as fr

CAPTURE = "2021-09-02_capture.jsonl"
REBASE_MS = 1_700_000_000_000


def renewed(frames: list[bytes], how: Callable[[bytes], bytes]) -> list[bytes]:
    """Two passes: the capture, then the capture one period later with `how` applied to each frame."""
    looped = list(islice(fr.replay([frames], rebase_to_ms=REBASE_MS, loop=True), 2 * len(frames)))
    return looped[: len(frames)] + [how(f) for f in looped[len(frames) :]]


def only_rsvp_ids(frame: bytes) -> bytes:
    return fr.new_rsvp_ids(frame, fr.ID_STRIDE)


def keep_groups(frame: bytes) -> bytes:
    """New RSVP, member and event ids, the group's id kept."""
    group = re.search(rb'"group_id"\s*:\s*(\d+)', frame)
    moved = fr.new_pass_ids(frame, 1)
    if group is None:
        return moved
    return re.sub(rb'("group_id"\s*:\s*)\d+', lambda m: m.group(1) + group.group(1), moved, count=1)


def main() -> int:
    from pyspark.ml.evaluation import BinaryClassificationEvaluator
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import functions as F

    from common.settings import PROJECT_ROOT, load_settings
    from common.spark import build_spark
    from ml import model as M
    from ml.evaluate import capture_examples

    capture = fr.read_capture([PROJECT_ROOT / "data" / "rsvps" / CAPTURE])
    variants = {
        "new RSVP ids only (the demo before 2026-12-06)": renewed(capture, only_rsvp_ids),
        "new RSVP, member and event ids, same groups": renewed(capture, keep_groups),
        "new RSVP, member, event and group ids (the demo now)": list(
            islice(fr.replay([capture], rebase_to_ms=REBASE_MS, loop=True, new_ids_each_loop=True), 2 * len(capture))
        ),
    }
    spark = build_spark(load_settings(), "bench-loop-recall", master="local[2]")
    spark.sparkContext.setLogLevel("ERROR")
    evaluator = BinaryClassificationEvaluator(rawPredictionCol="scores", labelCol="label")
    results = {}
    with TemporaryDirectory() as tmp:
        for n, (name, frames) in enumerate(variants.items()):
            path = Path(tmp) / f"{n}.jsonl"
            path.write_bytes(b"\n".join(frames) + b"\n")
            examples, messages = capture_examples(spark, str(path))
            examples = examples.persist()
            second = F.col("rsvp_id") >= fr.ID_STRIDE
            model = M.fit("logistic_regression", examples.filter(~second))
            scored = M.predict(model, examples.filter(second))
            auc = evaluator.evaluate(scored.withColumn("scores", array_to_vector(F.array(1 - F.col("p_yes"), "p_yes"))))
            results[name] = round(auc, 3)
            print(f"bench: {name}: ROC AUC on the second pass {auc:.3f}", flush=True)
            examples.unpersist()
            messages.unpersist()
    spark.stop()
    lines = [
        f"Fitted on one pass of {CAPTURE} ({len(capture):,} messages), scored on the next (logistic regression)",
        "",
        "| between passes | ROC AUC on the next pass |",
        "|---|---:|",
        *(f"| {name} | {auc:.3f} |" for name, auc in results.items()),
    ]
    write_results("loop_recall", {"capture": CAPTURE, "roc_auc_next_pass": results}, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
