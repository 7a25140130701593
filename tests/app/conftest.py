"""App tests: a small lakehouse on local disk, written with deltalake, that the pages read."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from lakehouse import catalogue
from lakehouse.aggregates import BY_NAME, long_table
from lakehouse.layout import Layout

H0 = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)


def write(root: Path, layer: str, name: str, df: pd.DataFrame) -> None:
    """A table as the chain leaves it; a count aggregate goes into its partition of gold's long counts table."""
    from deltalake import write_deltalake

    layout = Layout(str(root))
    if layer == "gold" and name in BY_NAME:
        write_deltalake(layout.table(catalogue.GOLD_COUNTS), long_table({name: df}), mode="overwrite",
                        partition_by=["aggregate"], predicate=f"aggregate = '{name}'")  # fmt: skip
        return
    write_deltalake(layout.table(catalogue.table(layer, name)), df, mode="overwrite")


def gold_tables() -> dict[str, pd.DataFrame]:
    minutes = [H0 + timedelta(minutes=m) for m in range(5)]
    return {
        "rsvp_totals": pd.DataFrame({"stream": ["rsvps"], "yes": [40], "no": [9], "guests": [3]}),
        "rsvps_by_region_minute": pd.DataFrame(
            {"minute": minutes, "country": "us", "state": "NY", "city": "New York", "yes": [5, 7, 9, 10, 9],
             "no": [1, 2, 2, 2, 2], "guests": 0}
        ),
        "rsvps_by_region_hour": pd.DataFrame(
            {"hour": [H0, H0], "country": ["us", "gb"], "state": ["NY", None], "city": ["New York", "London"],
             "yes": [30, 10], "no": [6, 3], "guests": [2, 1]}
        ),
        "events_by_minute": pd.DataFrame(  # e1: a yes at H0 and a no a minute later; e3: two yes; e2: one yes
            {"event_id": ["e1", "e1", "e3", "e2"], "minute": [H0, H0 + timedelta(minutes=1), H0, H0],
             "yes": [1, 0, 2, 1], "no": [0, 1, 0, 0], "guests": 0}
        ),
        "top_groups_5min": pd.DataFrame({"group_id": [1, 2], "yes": [12, 4], "no": [1, 0], "as_of": H0}),
        "topic_trends": pd.DataFrame(
            {"hour": [H0, H0], "urlkey": ["hiking", "tech"], "yes": [20, 10], "no": [2, 3], "rank": [1, 2],
             "previous_rank": [None, None], "rank_change": [None, None], "as_of": H0}
        ),
        "category_trends": pd.DataFrame(
            {"hour": [H0, H0], "category": ["Hiking / Outdoors", "other"], "yes": [25, 15], "no": [4, 5],
             "rank": [1, 2], "previous_rank": [None, None], "rank_change": [None, None], "categories_version": "v1"}
        ),
        "scored_rsvps": pd.DataFrame(
            {"rsvp_id": [11, 12], "model_version": "v1", "probability_yes": [0.81, 0.35], "predicted": ["yes", "no"],
             "scored_at": H0, "rsvp_time": H0, "member_id": [1, 2], "group_id": [1, 2], "event_id": ["e1", "e2"],
             "group_name": ["Hikers", "Coders"], "event_name": ["Walk", "Talk"], "country": ["us", "gb"],
             "answer": ["yes", "yes"], "version_mtime": 1, "version_partition": 0, "version_offset": [1, 2]}
        ),
        "pipeline_metrics": pd.DataFrame(
            {"query": ["bronze-rsvps", "silver-rsvps"], "run_id": "r", "batch_id": [0, 0],
             "batch_started": [H0, H0], "input_rows": [49, 49], "input_rows_per_s": [10.0, 5.0],
             "processed_rows_per_s": [100.0, 20.0], "batch_ms": [900, 4000], "add_batch_ms": [800, 3900],
             "kafka_offsets_behind_max": [0, None], "kafka_offsets_behind_avg": [0.0, None]}
        ),
        "freshness": pd.DataFrame(
            {"stage": ["silver", "gold"], "query": ["silver-rsvps", "gold-rsvps"], "batch_id": [0, 0],
             "rows": [49, 49], "p50_ms": [3000, 5000], "p95_ms": [4000, 7000], "max_ms": [4100, 7200],
             "visible_at": [H0, H0]}
        ),
        "batch_phases": pd.DataFrame(  # silver timed its own phases in two batches; bronze has Spark's only
            {"query": ["silver-rsvps"] * 6 + ["bronze-rsvps"],
             "batch_id": [0, 0, 0, 1, 1, 1, 0], "seq": [-5, 0, 1, -5, 0, 1, -5],
             "phase": ["spark: addBatch", "parse and validate", "merge"] * 2 + ["spark: addBatch"],
             "started_at": [H0] * 7, "seconds": [9.0, 1.0, 4.0, 9.0, 3.0, 6.0, 0.5], "rows": [49] * 7}
        ),
    }  # fmt: skip


def silver_tables() -> dict[str, pd.DataFrame]:
    return {
        "groups": pd.DataFrame(
            {"group_id": [1, 2], "group_name": ["Hikers", "Coders"], "group_city": ["New York", "London"],
             "group_country": ["us", "gb"], "group_lat": [40.7, 51.5], "group_lon": [-74.0, -0.1]}
        ),
        "topics": pd.DataFrame({"urlkey": ["hiking", "tech"], "topic_name": ["Hiking", "Technology"]}),
        "group_topics": pd.DataFrame({"group_id": [1], "urlkey": ["hiking"]}),
        "events": pd.DataFrame(
            {"event_id": ["e1", "e2", "e3"], "group_id": [1, 2, 1], "venue_id": [10, None, None],
             "event_name": ["Walk", "Talk", "Climb"], "event_url": ["https://meetup.com/e1", None, None],
             "time": [H0 + timedelta(days=2)] * 3}
        ),
        "venues": pd.DataFrame({"venue_id": [10], "venue_name": ["Central Park"], "lat": [40.78], "lon": [-73.97]}),
        "rsvps": pd.DataFrame(  # newest answers: Ann comes back to group 1 (Walk and Climb)
            {"rsvp_id": [1, 2, 3, 4, 5], "event_id": ["e1", "e1", "e3", "e3", "e2"], "member_id": [1, 2, 1, 3, 2],
             "response": ["yes", "no", "yes", "yes", "yes"]}
        ),
        "members": pd.DataFrame({"member_id": [1, 2, 3], "member_name": ["Ann", "Bob", "Cy"]}),
        "quarantine": pd.DataFrame(
            {"topic": "meetup.rsvps", "partition": [0], "offset": [7], "reason": ["bad_json"], "detail": ["line 1"],
             "quarantined_at": [H0]}
        ),
    }  # fmt: skip


def model_record() -> dict:
    curve = [{"threshold": t / 10, "fpr": t / 10, "tpr": min(1.0, t / 8), "recall": t / 10, "precision": 0.5}
             for t in range(11)]  # fmt: skip
    metrics = {"rows": 100, "yes_rate": 0.8, "roc_auc": 0.76, "pr_auc_no": 0.3, "log_loss": 0.39, "brier": 0.12,
               "accuracy": 0.85, "calibration": [{"bin": "0.7-0.8", "rows": 100, "predicted": 0.75, "observed": 0.8}],
               "roc_curve": curve, "pr_curve_no": curve}  # fmt: skip
    baseline = {**metrics, "roc_auc": 0.5, "rule": None}
    return {
        "name": "rsvp_response", "version": "v1", "created_at": "2026-11-29T10:00:00+00:00",
        "classifier": "logistic_regression", "chosen_by": "lowest log loss on the validation period",
        "metrics": metrics, "baselines": {"majority": baseline},
        "importances": [{"feature": "member_yes_rate", "abs_coefficient": 7.5},
                        {"feature": "guests", "abs_coefficient": 1.1}],
        "training_window": {"rsvps": 1856, "from": "2015", "to": "2020"}, "test_window": {"rsvps": 1404},
    }  # fmt: skip


@pytest.fixture(autouse=True)
def no_scoring_warm_up(monkeypatch):
    """The model page would start a Spark for its form in the background; these pages have no real model."""
    monkeypatch.setenv("MEETUP_APP_WARM_UP", "0")


@pytest.fixture
def empty_lake(tmp_path, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_ROOT", str(tmp_path / "lake"))
    return tmp_path / "lake"


@pytest.fixture
def lake(empty_lake):
    for name, df in gold_tables().items():
        write(empty_lake, "gold", name, df)
    for name, df in silver_tables().items():
        write(empty_lake, "silver", name, df)
    folder = empty_lake / "models" / "rsvp_response"
    (folder / "v1").mkdir(parents=True)
    (folder / "v1" / "metadata.json").write_text(json.dumps(model_record()))
    (folder / "CURRENT").write_text(json.dumps({"version": "v1"}))
    return empty_lake
