"""Benchmark: what each group of the model's features adds, judged across eras (leave one capture out).

    make bench-ml-features         # or: .venv/bin/python -m bench.ml_features --classifier logistic_regression

For each feature set, `ml.evaluate.leave_one_capture_out` trains on all shipped captures but one and tests
on that one, for the two captures large enough to judge (2015, 1,851 RSVPs; 2021, 1,404), printing ROC AUC
and log loss, raw and calibrated online, with the log loss as a share of the capture's own yes rate's.
The sets add one group at a time to the features the model had before 2026-12-06:
- before: the message (guests, lead time, local hour and weekend of the RSVP, online, country, topics,
  photo, services) and the point-in-time history of member, group and event;
- + event time: the event's weekday and hour in the group's local time;
- + venue distance: the venue's distance from the group's centre (log km, or unknown);
- + name words: a bag of the words of the event's and the group's names (those 20 RSVPs share);
- now: the model's features since 2026-12-06 (event time and venue distance; the name words did not help);
- + all three;
- now + each service: a flag for each service the member linked (facebook, twitter, linkedin, tumblr,
  flickr) beside the one that says any.
Writes bench/results/ml_features.json and .md. Needs no service.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from bench.common import write_results
from ml.features import NUMERIC_FEATURES, SERVICE_FLAGS

EVENT_TIME = ("event_weekend", "event_hour_sin", "event_hour_cos")
VENUE = ("venue_log_km", "venue_km_unknown")
BEFORE = tuple(f for f in NUMERIC_FEATURES if f not in (*EVENT_TIME, *VENUE))
JUDGED = ["2015-03-08_capture.jsonl", "2021-09-02_capture.jsonl"]


def feature_sets() -> dict[str, dict[str, Any]]:
    return {
        "before": {"numeric": BEFORE, "bags": ("topics",)},
        "+ event time": {"numeric": (*BEFORE, *EVENT_TIME), "bags": ("topics",)},
        "+ venue distance": {"numeric": (*BEFORE, *VENUE), "bags": ("topics",)},
        "+ name words": {"numeric": BEFORE, "bags": ("topics", "name_words")},
        "now: + event time + venue distance": {"numeric": NUMERIC_FEATURES, "bags": ("topics",)},
        "+ all three": {"numeric": NUMERIC_FEATURES, "bags": ("topics", "name_words")},
        "now + each service": {"numeric": (*NUMERIC_FEATURES, *SERVICE_FLAGS), "bags": ("topics",)},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classifier", default="logistic_regression", help="auto compares the three candidates")
    parser.add_argument("--sets", nargs="*", metavar="NAME", help="only these feature sets (default: all)")
    parser.add_argument("--name", default="ml_features", help="results file name (bench/results/<name>.*)")
    args = parser.parse_args()
    sets = {k: v for k, v in feature_sets().items() if not args.sets or k in args.sets}
    from common.settings import PROJECT_ROOT, load_settings
    from common.spark import build_spark
    from ml.evaluate import leave_one_capture_out

    spark = build_spark(load_settings(), "bench-ml-features", master="local[2]")
    spark.sparkContext.setLogLevel("ERROR")
    captures = sorted((PROJECT_ROOT / "data" / "rsvps").glob("*.jsonl"))
    results: dict[str, list[dict[str, Any]]] = {}
    table = [
        "| features | held out | ROC AUC raw / calibrated | log loss raw / calibrated / capture's own rate | "
        "calibrated ÷ own rate |",
        "|---|---|---:|---:|---:|",
    ]
    for name, features in sets.items():
        started = time.perf_counter()
        results[name] = leave_one_capture_out(
            spark, captures, classifier=args.classifier, features=features, held_out=JUDGED
        )
        print(f"bench: {name}: {time.perf_counter() - started:.0f} s", flush=True)
        for result in results[name]:
            raw, calibrated = result["scores"]["model, raw"], result["scores"]["model, calibrated online"]
            own = result["scores"]["capture's own yes rate"]
            table.append(
                f"| {name} | {result['held_out'][:4]} | {raw['roc_auc']:.3f} / {calibrated['roc_auc']:.3f} | "
                f"{raw['log_loss']:.3f} / {calibrated['log_loss']:.3f} / {own['log_loss']:.3f} | "
                f"{calibrated['log_loss'] / own['log_loss']:.3f} |"
            )
    spark.stop()
    write_results(args.name, {"classifier": args.classifier, "results": results}, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
