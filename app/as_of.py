"""How far behind Kafka the pages are: the "as of" line of the Live and Pipeline health pages, from gold's
newest batch (`gold/freshness`) and the chain's heartbeat."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from app.reader import CHAIN, Lakehouse, NoData, ServiceDown
from lakehouse import catalogue
from pipelines import heartbeat
from pipelines.stages import HOT_QUERY  # the query whose heartbeat says the hot path runs

# How the Live page says how far behind Kafka it is (as_of): gold's newest batch's lag, and whether gold runs.
BEHIND_S = 30.0  # a newest gold batch whose RSVPs waited longer than this (p95) is "behind"
STALLED_S = 180.0  # no gold batch at all (rows or not) for this long: the chain is stopped or stuck


@dataclass(frozen=True)
class AsOf:
    """How fresh the gold tables are: `level` is fresh, behind or stalled; `text` says it in words."""

    level: str
    text: str
    lag_s: float | None = None  # p95 of the newest gold batch's RSVPs, Kafka append -> visible
    landed_s: float | None = None  # how long ago that batch became visible


def _utc(value: object) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _span(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def as_of(newest_batch: dict[str, Any] | None, alive_at: pd.Timestamp | None, now: pd.Timestamp) -> AsOf:
    """newest_batch: gold's newest freshness row (p95_ms, visible_at), None before any; alive_at: when gold's
    query was last seen running (the chain's heartbeat), None when it is known not to run."""
    now = _utc(now)
    idle = (now - _utc(alive_at)).total_seconds() if alive_at is not None else None
    running = idle is not None and idle <= STALLED_S
    if newest_batch is None:
        if running:
            return AsOf("fresh", "The chain is running; no RSVP has reached gold yet.")
        return AsOf("stalled", f"No RSVP has reached gold yet, and its query is not running: start {CHAIN}.")
    lag = newest_batch["p95_ms"] / 1000 if newest_batch.get("p95_ms") is not None else None
    landed = (now - _utc(newest_batch["visible_at"])).total_seconds()
    behind = f"{_span(lag)} behind Kafka" if lag is not None else "of unknown lag"
    if not running:
        since = f"has not been seen running for {_span(idle)}" if idle is not None else "is not running"
        return AsOf("stalled", f"Stalled: gold's query {since}; its last RSVPs were {behind}.", lag, landed)
    if lag is not None and lag > BEHIND_S:
        return AsOf("behind", f"Behind: the newest RSVPs here were {behind} (landed {_span(landed)} ago).", lag, landed)
    quiet = f"; no new RSVPs for {_span(landed)}" if landed > 60 else ""
    text = f"Fresh: the newest RSVPs here were {behind} (landed {_span(landed)} ago){quiet}."
    return AsOf("fresh", text, lag, landed)


def as_of_now(lake: Lakehouse, now: pd.Timestamp | None = None) -> AsOf:
    """as_of from the lakehouse: gold's freshness rows, and the chain's heartbeat (pipelines/heartbeat.py);
    a generation written before heartbeats falls back on gold's newest batch in pipeline_metrics."""
    now = _utc(now if now is not None else pd.Timestamp.now(tz="UTC"))
    try:
        rows = lake.newest(catalogue.GOLD_FRESHNESS, "visible_at", 20)
        rows = rows[rows["stage"] == "gold"].sort_values("visible_at")
        newest_batch = rows.iloc[-1].to_dict() if len(rows) else None
    except NoData:
        newest_batch = None
    try:
        beat = heartbeat.last(lake.settings, lake.generation)
    except Exception as error:  # boto3 raises many kinds for an endpoint that is down
        raise ServiceDown(f"the object store at {lake.settings.s3.endpoint} does not answer ({error})") from error
    if beat is not None:
        at, running = beat
        return as_of(newest_batch, pd.Timestamp(at) if HOT_QUERY in running else None, now)
    try:
        runs = lake.newest(catalogue.GOLD_PIPELINE_METRICS, "batch_started", 50, ["query", "batch_started"])
        runs = runs[runs["query"] == HOT_QUERY]
        last_run = runs["batch_started"].max() if len(runs) else None
    except NoData:
        last_run = None
    return as_of(newest_batch, last_run, now)
