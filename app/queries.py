"""What each page reads: one function per chart or table, on the lakehouse reader (`app/reader.py`), the
model registry and the generations. Grouped by page: Live and Regions and Categories (gold), Events and
groups, Pipeline health, Model.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

from app.reader import Lakehouse, NoData, ServiceDown
from common.settings import Settings
from common.store import Store
from lakehouse import catalogue, generations
from ml.registry import CATEGORY_MODEL, RESPONSE_MODEL, NoModelError, Registry
from pipelines.cadence import SLOW_INTERVAL_WORDS, SNAPSHOT_EVERY_WORDS

HOUR = pd.Timedelta(hours=1)


# ---- gold ------------------------------------------------------------------------------------------


def totals(lake: Lakehouse) -> dict[str, int]:
    row = lake.counts("rsvp_totals").iloc[0]
    return {"yes": int(row["yes"]), "no": int(row["no"]), "guests": int(row["guests"])}


def rate_per_minute(lake: Lakehouse, minutes: int = 120) -> pd.DataFrame:
    """RSVPs per minute of stream time (yes, no), the last `minutes` minutes."""
    df = lake.counts("rsvps_by_region_minute", ["minute", "yes", "no"],
                     since_newest=("minute", pd.Timedelta(minutes=minutes - 1)))  # fmt: skip
    return df.groupby("minute", as_index=False)[["yes", "no"]].sum().sort_values("minute")


def top_groups(lake: Lakehouse) -> pd.DataFrame:
    groups = lake.table(catalogue.GOLD_TOP_GROUPS)
    try:
        names = lake.table(catalogue.SILVER_GROUPS, ["group_id", "group_name", "group_city", "group_country"],
                           filters=[("group_id", "in", [int(g) for g in groups["group_id"]])])  # fmt: skip
        groups = groups.merge(names, on="group_id", how="left")
        # silver (the slow path) may not have a group the hot path counted yet: name it by its id, as such
        groups["group_name"] = groups["group_name"].fillna("group " + groups["group_id"].astype(str))
    except NoData:
        groups["group_name"] = "group " + groups["group_id"].astype(str)
    return groups.sort_values("yes", ascending=False)


def scored_feed(lake: Lakehouse, limit: int = 50) -> pd.DataFrame:
    try:
        df = lake.newest(catalogue.GOLD_SCORED_RSVPS, "scored_at", limit)
    except NoData as error:
        raise NoData(not_scored_yet(lake.settings, str(error))) from error
    return df.sort_values(["scored_at", "rsvp_time"], ascending=False).head(limit)


def not_scored_yet(settings: Settings, missing: str) -> str:
    """Why the scored feed is empty: no model yet (train one), or a model that the chain's scoring stage, on
    the slow path, has not used in a batch yet (wait for it)."""
    try:
        version = model_record(settings).get("version")
    except NoData:
        return f"{missing}. RSVPs are scored once a model exists: run `make train`"
    return (
        f"{missing}. Model {version or 'v?'} exists: the chain's scoring stage writes its scores at its next "
        f"batch ({SLOW_INTERVAL_WORDS})"
    )


def live_accuracy(lake: Lakehouse) -> pd.DataFrame:
    """Per model version: RSVPs scored, share predicted right against the newest answer, mean p(yes)."""
    df = lake.table(catalogue.GOLD_SCORED_RSVPS, ["model_version", "predicted", "answer", "probability_yes"])
    df = df.assign(correct=(df["predicted"] == df["answer"]).astype(float), yes=(df["answer"] == "yes").astype(float))
    return df.groupby("model_version", as_index=False).agg(
        scored=("correct", "size"), accuracy=("correct", "mean"), mean_p_yes=("probability_yes", "mean"),
        yes_rate=("yes", "mean"),
    )  # fmt: skip


def calibration_history(lake: Lakehouse) -> pd.DataFrame:
    """The scoring stream's online calibration, block by block (gold `score_calibration`): when each block
    began, the model version, the shift of its log-odds, and the earlier answers (how many, their yes rate)
    that decided it; newest last."""
    df = lake.table(
        catalogue.GOLD_SCORE_CALIBRATION, ["block", "model_version", "shift", "answers", "yes_rate", "block_start"]
    )
    return df.sort_values(["block_start", "model_version"]).reset_index(drop=True)


CHART_GAP = pd.Timedelta(minutes=10)  # blocks further apart than this (the chain was stopped) are not joined


def with_breaks(history: pd.DataFrame, gap: pd.Timedelta = CHART_GAP) -> pd.DataFrame:
    """calibration_history's rows for a line chart: a row with no shift between two blocks of a model version
    that began more than `gap` apart, so that the line stops where the stream did instead of drawing a slope
    over the hours nothing was scored."""
    parts = []
    for _, rows in history.groupby("model_version", sort=False):
        rows = rows.sort_values("block_start")
        far = rows["block_start"].diff() > gap
        breaks = rows[far].assign(shift=float("nan"), block_start=rows["block_start"][far] - gap / 2)
        parts.append(pd.concat([rows, breaks]).sort_values("block_start"))
    if not parts:
        return history
    return pd.concat(parts).reset_index(drop=True)


def calibration_in_use(history: pd.DataFrame, version: str | None) -> str:
    """One sentence: the newest block's shift for `version` and what decided it."""
    rows = history[history["model_version"] == version] if version is not None else history.iloc[0:0]
    if rows.empty:
        return f"no block scored by {version} yet: its probabilities are used as the model gives them"
    last = rows.iloc[-1]
    if not last["answers"]:
        return f"block {last['block']}: no earlier answers scored by {version} yet, so no shift"
    p = 1 / (1 + math.exp(-last["shift"]))  # what a raw 0.5 becomes
    return (
        f"block {last['block']} (from {pd.Timestamp(last['block_start']):%Y-%m-%d %H:%M:%S}): log-odds "
        f"{last['shift']:+.2f}, fitted on {int(last['answers']):,} earlier answers ({last['yes_rate']:.0%} yes); "
        f"a raw p(yes) of 0.50 is shown as {p:.2f}"
    )


def regions(lake: Lakehouse, level: str = "country") -> pd.DataFrame:
    """yes / no / guests per country (or country, state, city) over all hours."""
    keys = {"country": ["country"], "city": ["country", "state", "city"]}[level]
    df = lake.counts("rsvps_by_region_hour")
    return df.groupby(keys, as_index=False, dropna=False)[["yes", "no", "guests"]].sum()


def city_points(lake: Lakehouse) -> pd.DataFrame:
    """yes / no / guests per city (as `regions(lake, "city")`) with a place on the map: the mean lat/lon of the
    city's groups (silver `groups`); cities whose groups have no coordinates are left out."""
    cities = regions(lake, "city")
    groups = lake.table(catalogue.SILVER_GROUPS, ["group_country", "group_city", "group_lat", "group_lon"])
    places = (
        groups.dropna(subset=["group_lat", "group_lon"])
        .groupby(["group_country", "group_city"], as_index=False)[["group_lat", "group_lon"]]
        .mean()
        .rename(columns={"group_country": "country", "group_city": "city", "group_lat": "lat", "group_lon": "lon"})
    )
    return cities.merge(places, on=["country", "city"], how="inner")


def topic_trends(lake: Lakehouse) -> pd.DataFrame:
    trends = lake.table(catalogue.GOLD_TOPIC_TRENDS)
    try:
        names = lake.table(catalogue.SILVER_TOPICS, ["urlkey", "topic_name"])
        trends = trends.merge(names, on="urlkey", how="left")
        # a topic the chain counted before silver (on its slower cadence) has its name: shown by its urlkey
        trends["topic_name"] = trends["topic_name"].fillna(trends["urlkey"])
    except NoData:
        trends["topic_name"] = trends["urlkey"]
    return trends


def category_trends(lake: Lakehouse) -> pd.DataFrame:
    try:
        return lake.table(catalogue.GOLD_CATEGORY_TRENDS)
    except NoData as error:
        raise NoData(
            "category trends appear once `make train` has fitted the categories (meetup-categories) and the "
            f"chain's next snapshot round, {SNAPSHOT_EVERY_WORDS}, has counted them"
        ) from error


def pipeline_metrics(lake: Lakehouse, span: pd.Timedelta = HOUR) -> pd.DataFrame:
    """Per query and batch, the last `span` of batches before the newest."""
    return lake.since_newest(catalogue.GOLD_PIPELINE_METRICS, "batch_started", span).sort_values("batch_started")


def batch_phases(lake: Lakehouse, span: pd.Timedelta = HOUR) -> pd.DataFrame:
    """Mean seconds per batch in each phase, per query (query, phase, seq, seconds, batches), over the last
    `span` of batches: where a batch's time goes. Spark's own parts are `spark: ...`; `spark: addBatch`
    holds the stage's phases, so it is left out where the stage timed its own."""
    phases = lake.since_newest(catalogue.GOLD_BATCH_PHASES, "started_at", span)
    timed = set(phases.loc[~phases["phase"].str.startswith("spark: "), "query"])
    phases = phases[~((phases["phase"] == "spark: addBatch") & phases["query"].isin(timed))]
    batches = phases.groupby("query")["batch_id"].nunique().rename("batches")
    per_batch = phases.groupby(["query", "phase"], as_index=False).agg(seconds=("seconds", "sum"), seq=("seq", "min"))
    per_batch = per_batch.join(batches, on="query")
    per_batch["seconds"] = per_batch["seconds"] / per_batch["batches"]
    return per_batch.sort_values(["query", "seq"]).reset_index(drop=True)


def freshness(lake: Lakehouse, span: pd.Timedelta = HOUR) -> pd.DataFrame:
    return lake.since_newest(catalogue.GOLD_FRESHNESS, "visible_at", span).sort_values("visible_at")


# ---- one event, one group ------------------------------------------------------------------------------


def search(lake: Lakehouse, text: str, limit: int = 20) -> pd.DataFrame:
    """Events and groups whose name contains `text` (any case) or whose id is `text`: kind, id, name, where."""
    text = text.strip()
    if not text:
        return pd.DataFrame(columns=["kind", "id", "name", "where"])
    events = lake.table(catalogue.SILVER_EVENTS, ["event_id", "event_name", "time"])
    groups = lake.table(catalogue.SILVER_GROUPS, ["group_id", "group_name", "group_city", "group_country"])
    wanted = text.lower()
    hit_events = events[events["event_name"].str.lower().str.contains(wanted, regex=False, na=False)
                        | (events["event_id"] == text)]  # fmt: skip
    hit_groups = groups[groups["group_name"].str.lower().str.contains(wanted, regex=False, na=False)
                        | (groups["group_id"].astype(str) == text)]  # fmt: skip
    found = pd.concat(
        [
            pd.DataFrame({"kind": "group", "id": hit_groups["group_id"].astype(str), "name": hit_groups["group_name"],
                          "where": hit_groups["group_city"] + ", " + hit_groups["group_country"].str.upper()}),
            pd.DataFrame({"kind": "event", "id": hit_events["event_id"], "name": hit_events["event_name"],
                          "where": hit_events["time"].astype(str)}),
        ],
        ignore_index=True,
    )  # fmt: skip
    return found.head(limit)


def event_counts(lake: Lakehouse, event_ids: list[str]) -> pd.DataFrame:
    """yes and no per event (the newest answer of each RSVP), from gold's counts: event_id, yes, no."""
    df = lake.counts("events_by_minute", ["event_id", "yes", "no"], where=[("event_id", "in", list(event_ids))])
    return df.groupby("event_id", as_index=False)[["yes", "no"]].sum()


def event_view(lake: Lakehouse, event_id: str) -> dict[str, Any]:
    """One event: its row (name, time, url), its group and venue, yes/no over time (cumulative, by the minute
    of each RSVP's newest answer) and its scored RSVPs. NoData when the event is unknown."""
    events = lake.table(catalogue.SILVER_EVENTS, filters=[("event_id", "=", event_id)])
    if events.empty:
        raise NoData(f"no event {event_id} in silver (yet): search by name, or wait for silver's next batch")
    event = events.iloc[0].to_dict()
    group = lake.table(catalogue.SILVER_GROUPS, filters=[("group_id", "=", int(event["group_id"]))])
    venue = (
        lake.table(catalogue.SILVER_VENUES, filters=[("venue_id", "=", int(event["venue_id"]))])
        if pd.notna(event.get("venue_id"))
        else pd.DataFrame()
    )
    minutes = lake.counts("events_by_minute", ["minute", "yes", "no"], where=[("event_id", "=", event_id)])
    over_time = minutes.groupby("minute", as_index=False)[["yes", "no"]].sum().sort_values("minute")
    over_time[["yes", "no"]] = over_time[["yes", "no"]].cumsum()
    try:
        scored = lake.table(catalogue.GOLD_SCORED_RSVPS, filters=[("event_id", "=", event_id)])
    except NoData:
        scored = pd.DataFrame()
    return {
        "event": event,
        "group": group.iloc[0].to_dict() if len(group) else None,
        "venue": venue.iloc[0].to_dict() if len(venue) else None,
        "over_time": over_time,
        "totals": {"yes": int(minutes["yes"].sum()), "no": int(minutes["no"].sum())},
        "scored": scored,
    }


def group_view(lake: Lakehouse, group_id: int) -> dict[str, Any]:
    """One group: its row, topics, events (with yes/no) and the members who come back (RSVPs to two or more
    of its events, by their newest answers). NoData when the group is unknown."""
    groups = lake.table(catalogue.SILVER_GROUPS, filters=[("group_id", "=", group_id)])
    if groups.empty:
        raise NoData(f"no group {group_id} in silver (yet): search by name, or wait for silver's next batch")
    events = lake.table(
        catalogue.SILVER_EVENTS, ["event_id", "event_name", "time"], filters=[("group_id", "=", group_id)]
    )
    if len(events):
        events = events.merge(event_counts(lake, list(events["event_id"])), on="event_id", how="left")
        events[["yes", "no"]] = events[["yes", "no"]].fillna(0).astype(int)
    try:  # 3NF: the pairs in group_topics, the names in topics
        topics = lake.table(catalogue.SILVER_GROUP_TOPICS, ["urlkey"], filters=[("group_id", "=", group_id)])
        if len(topics):
            names = lake.table(catalogue.SILVER_TOPICS, ["urlkey", "topic_name"],
                               filters=[("urlkey", "in", list(topics["urlkey"]))])  # fmt: skip
            topics = topics.merge(names, on="urlkey", how="left")
        else:
            topics["topic_name"] = pd.Series(dtype=str)
    except NoData:
        topics = pd.DataFrame(columns=["urlkey", "topic_name"])
    returning = pd.DataFrame(columns=["member_id", "member_name", "events", "yes"])
    if len(events):
        rsvps = lake.table(catalogue.SILVER_RSVPS, ["event_id", "member_id", "response"],
                           filters=[("event_id", "in", list(events["event_id"]))])  # fmt: skip
        per_member = rsvps.groupby("member_id", as_index=False).agg(
            events=("event_id", "nunique"), yes=("response", lambda r: int((r == "yes").sum()))
        )
        returning = per_member[per_member["events"] >= 2].sort_values(["events", "yes"], ascending=False)
        if len(returning):
            names = lake.table(catalogue.SILVER_MEMBERS, ["member_id", "member_name"],
                               filters=[("member_id", "in", [int(m) for m in returning["member_id"]])])  # fmt: skip
            returning = returning.merge(names, on="member_id", how="left")
    return {
        "group": groups.iloc[0].to_dict(),
        "topics": topics.sort_values("topic_name"),
        "events": events.sort_values("time", ascending=False) if len(events) else events,
        "returning": returning,
    }


def quarantine(lake: Lakehouse, limit: int = 20) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(counts per reason, the most recent rows) of silver's quarantine."""
    df = lake.table(catalogue.SILVER_QUARANTINE, ["topic", "partition", "offset", "reason", "detail", "quarantined_at"])
    counts = df.groupby("reason", as_index=False).size().rename(columns={"size": "rows"})
    return counts.sort_values("rows", ascending=False), df.sort_values("quarantined_at", ascending=False).head(limit)


# ---- models ----------------------------------------------------------------------------------------


def model_record(settings: Settings, name: str = RESPONSE_MODEL) -> dict[str, Any]:
    """The current version's metadata.json; NoData before the first training."""
    try:
        return Registry(settings, name).metadata()
    except NoModelError as error:
        raise NoData(f"no model yet: run `make train` once the chain has data ({error})") from error
    except Exception as error:
        raise ServiceDown(f"the object store at {settings.s3.endpoint} does not answer ({error})") from error


def model_versions(settings: Settings) -> list[str]:
    return Registry(settings).versions()


def categories_record(settings: Settings) -> dict[str, Any]:
    return model_record(settings, CATEGORY_MODEL)


def generations_record(settings: Settings) -> dict[str, Any]:
    data = Store(settings).read(generations.POINTER)
    return json.loads(data) if data else {"generation": "g1"}
