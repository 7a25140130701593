"""What the app reads, apart from page code: gold and silver Delta tables, model records, PostgreSQL.

Delta tables are read with the `deltalake` package (delta-rs: no JVM), straight from the object store
or a local root, for the generation that `<root>/CURRENT` names. Every function returns a pandas
DataFrame (or a dict) and raises one of two errors the pages turn into plain empty states:
- `NoData`: the table is not there yet (or holds nothing), with the command that fills it;
- `ServiceDown`: the object store or PostgreSQL does not answer, with the setting to check.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from urllib.parse import urlparse

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable

from common.settings import Settings
from common.store import Store
from lakehouse import catalogue, generations
from lakehouse.aggregates import MEASURES, aggregate, net
from lakehouse.catalogue import Table
from lakehouse.layout import Layout
from ml.registry import CATEGORY_MODEL, RESPONSE_MODEL, NoModelError, Registry
from pipelines import heartbeat
from pipelines.cadence import FIRST_SNAPSHOT_WORDS, SLOW_INTERVAL_WORDS, SNAPSHOT_EVERY_WORDS
from pipelines.stages import HOT_QUERY  # the query whose heartbeat says the hot path runs

CHAIN = "make demo (or meetup-chain)"


def missing_table(entry: Table, generation: str) -> str:
    """What to tell a reader about a table that is not there yet: a snapshot table comes with the running
    chain's first snapshot round, not with its start."""
    if entry.snapshot:
        return (
            f"no {entry.layer} snapshot `{entry.name}` yet in generation {generation}: the running chain writes it "
            f"at its first snapshot round, {FIRST_SNAPSHOT_WORDS} and then {SNAPSHOT_EVERY_WORDS} (start it with "
            f"{CHAIN})"
        )
    return f"no {entry.layer} table `{entry.name}` yet in generation {generation}: run {CHAIN}"


HOUR = pd.Timedelta(hours=1)


class NoData(Exception):
    """Nothing to show yet; the message says what to run."""


class ServiceDown(Exception):
    """A service the page needs does not answer; the message names it."""


# Open tables are kept between page runs and brought up to date with `update_incremental`, which reads only
# the commits since the last read: reopening a table on every refresh re-reads its log from the last
# checkpoint. One lock per table, because Streamlit runs each browser session in its own thread.
_OPEN: dict[tuple, tuple[DeltaTable, threading.Lock]] = {}
_OPEN_LOCK = threading.Lock()
_OPEN_MAX = 64


def delta_rs_uri(path: str) -> str:
    """A lakehouse path as delta-rs names it: Hadoop's `s3a://` is plain `s3://` there."""
    return "s3://" + path[len("s3a://") :] if path.startswith("s3a://") else path


@dataclass(frozen=True)
class Lakehouse:
    """The lakehouse as one page run sees it: the generation and the credentials are looked up once per run."""

    settings: Settings

    @cached_property
    def generation(self) -> str:
        try:
            return generations.current(self.settings)
        except Exception as error:  # boto3 raises many kinds for an endpoint that is down
            raise ServiceDown(f"the object store at {self.settings.s3.endpoint} does not answer ({error})") from error

    def uri(self, entry: Table) -> str:
        return delta_rs_uri(Layout.from_settings(self.settings, self.generation).table(entry))

    @cached_property
    def options(self) -> dict[str, str]:
        """delta-rs storage options: the endpoint, and the settings' keys, else the AWS provider chain's (once)."""
        if urlparse(self.settings.lakehouse_root).scheme not in ("s3a", "s3"):
            return {}
        import boto3

        options = {
            "AWS_ENDPOINT_URL": self.settings.s3.endpoint,
            "AWS_REGION": self.settings.s3.region,
            "AWS_ALLOW_HTTP": str(not self.settings.s3.secure).lower(),
            "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": str(not self.settings.s3.path_style).lower(),
        }
        s3 = self.settings.s3
        if s3.has_keys:
            key, secret, token = s3.access_key_id, s3.secret_access_key, s3.session_token
        else:
            credentials = boto3.session.Session().get_credentials()  # the provider chain, as everywhere else
            if credentials is None:
                return options
            frozen = credentials.get_frozen_credentials()
            key, secret, token = frozen.access_key, frozen.secret_key, frozen.token
        options.update({"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret})
        if token:
            options["AWS_SESSION_TOKEN"] = token
        return options

    @contextmanager
    def delta(self, entry: Table) -> Iterator[DeltaTable]:
        """The table at its newest version, held for this reader alone while the block runs."""
        from deltalake.exceptions import TableNotFoundError

        uri = self.uri(entry)
        key = (uri, tuple(sorted(self.options.items())))
        with _OPEN_LOCK:
            table, lock = _OPEN.get(key, (None, threading.Lock()))
        with lock:
            try:
                if table is None:
                    table = DeltaTable(uri, storage_options=self.options)
                else:
                    try:
                        table.update_incremental()
                    except Exception:  # dropped and re-created under the same name, or vacuumed: start over
                        table = DeltaTable(uri, storage_options=self.options)
            except TableNotFoundError as error:
                raise NoData(missing_table(entry, self.generation)) from error
            except OSError as error:
                raise ServiceDown(f"cannot read {uri}: {error}") from error
            with _OPEN_LOCK:
                if key not in _OPEN and len(_OPEN) >= _OPEN_MAX:
                    _OPEN.pop(next(iter(_OPEN)))
                _OPEN[key] = (table, lock)
            try:
                yield table
            except OSError as error:
                raise ServiceDown(f"cannot read {uri}: {error}") from error

    def table(self, entry: Table, columns: list[str] | None = None, filters: list | None = None) -> pd.DataFrame:
        """A table (or the rows that pass `filters`, whose files are pruned by their statistics) as pandas;
        NoData when it does not exist or is empty."""
        with self.delta(entry) as table:
            df = table.to_pandas(columns=columns, filters=filters or None)
        if df.empty and not filters:
            raise NoData(f"the {entry.layer} table `{entry.name}` is still empty: the chain has not written to it yet")
        return df

    def newest(self, entry: Table, column: str, limit: int, columns: list[str] | None = None) -> pd.DataFrame:
        """At least the `limit` rows with the largest `column` (all rows tied with them too), reading only the
        files that can hold them: files are taken newest-first by their max statistic until they hold `limit`
        rows, and no row below the smallest min among them can be in the top `limit`."""
        with self.delta(entry) as table:
            threshold = _threshold(pa.table(table.get_add_actions(flatten=True)), column, limit)
            filters = [(column, ">=", threshold)] if threshold is not None else None
            df = table.to_pandas(columns=columns, filters=filters)
            if len(df) < limit and filters:  # deletion vectors make num_records an overcount: read it all
                df = table.to_pandas(columns=columns)
        if df.empty:
            raise NoData(f"the {entry.layer} table `{entry.name}` is still empty: the chain has not written to it yet")
        return df

    def since_newest(self, entry: Table, column: str, span: pd.Timedelta, columns: list[str] | None = None):
        """Rows whose `column` is within `span` of the table's largest value (found from file statistics)."""
        with self.delta(entry) as table:
            actions = pa.table(table.get_add_actions(flatten=True))
            newest = _stat(actions, f"max.{column}", max)
            filters = [(column, ">=", newest - span.to_pytimedelta())] if newest is not None else None
            df = table.to_pandas(columns=columns, filters=filters)
        if df.empty:
            raise NoData(f"the {entry.layer} table `{entry.name}` is still empty: the chain has not written to it yet")
        return df

    def counts(
        self,
        name: str,
        columns: list[str] | None = None,
        since_newest: tuple[str, pd.Timedelta] | None = None,
        where: list[tuple] | None = None,
    ):
        """One count aggregate (aggregates.py): its rows of the long `counts` table, read from its partition
        alone and summed per key (a row is one batch's change), as a table of its own. since_newest=(column,
        span): only keys within span of the column's largest value in that partition (found from file
        statistics); where: more filters on the keys, delta-rs style."""
        keys = aggregate(name).keys
        keep = keys + MEASURES
        wanted = [c for c in (columns or keep) if c in keep]
        filters = [("aggregate", "=", name), *(where or [])]
        with self.delta(catalogue.GOLD_COUNTS) as table:
            if since_newest is not None:
                column, span = since_newest
                actions = pa.table(table.get_add_actions(flatten=True))
                mine = actions.filter(pc.equal(actions.column("partition.aggregate"), name))
                newest = _stat(mine, f"max.{column}", max)
                if newest is not None:
                    filters.append((column, ">=", newest - span.to_pytimedelta()))
            df = table.to_pandas(columns=list(keep), filters=filters)  # every key, to sum a key's rows
        if df.empty and not where:
            raise NoData(f"no gold counts `{name}` yet in generation {self.generation}: run {CHAIN}")
        return net(df, keys)[wanted]


def _stat(actions: pa.Table, field: str, pick):
    if field not in actions.column_names:
        return None
    values = [v for v in actions.column(field).to_pylist() if v is not None]
    return pick(values) if values and len(values) == actions.num_rows else None


def _threshold(actions: pa.Table, column: str, limit: int):
    if f"max.{column}" not in actions.column_names or f"min.{column}" not in actions.column_names:
        return None
    files = list(zip(actions.column(f"max.{column}").to_pylist(), actions.column(f"min.{column}").to_pylist(),
                     actions.column("num_records").to_pylist(), strict=True))  # fmt: skip
    if any(None in f for f in files):
        return None  # a file without statistics (or all nulls): no safe threshold
    held, smallest = 0, None
    for _, least, rows in sorted(files, key=lambda f: f[0], reverse=True):
        smallest = least if smallest is None else min(smallest, least)
        held += rows
        if held >= limit:
            return smallest
    return None


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


def iso3(alpha_2: str | None) -> str | None:
    """Plotly's world map wants ISO 3166 alpha-3 codes; the stream has lower-case alpha-2."""
    import pycountry

    country = pycountry.countries.get(alpha_2=(alpha_2 or "").upper()) if alpha_2 else None
    return country.alpha_3 if country else None


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


def event_view(lake: Lakehouse, event_id: str) -> dict:
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


def group_view(lake: Lakehouse, group_id: int) -> dict:
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


# ---- rank changes, as a person reads them ------------------------------------------------------------

MOVES = {"climbed": "#2E7D32", "held its rank": "#9E9E9E", "fell": "#C62828", "new this hour": "#1565C0"}


def move(rank_change) -> str:
    """A rank change (previous rank - rank; null when unranked the hour before) as one of MOVES."""
    if rank_change is None or pd.isna(rank_change):
        return "new this hour"
    return "climbed" if rank_change > 0 else "fell" if rank_change < 0 else "held its rank"


def move_label(rank_change) -> str:
    """`▲ 3`, `▼ 2`, `=`, `new`: the change beside a bar."""
    if rank_change is None or pd.isna(rank_change):
        return "new"
    return f"▲ {int(rank_change)}" if rank_change > 0 else f"▼ {-int(rank_change)}" if rank_change < 0 else "="


# ---- the model's features, as a person reads them ------------------------------------------------------

FEATURE_WORDS = {
    "guests": "guests brought",
    "has_guests": "brings guests",
    "lead_log_hours": "hours until the event (log)",
    "lead_unknown": "event time unknown",
    "lead_past": "event already started",
    "local_hour_sin": "local hour (sine)",
    "local_hour_cos": "local hour (cosine)",
    "local_weekend": "on a weekend, local time",
    "online": "online event",
    "topic_count": "group's number of topics",
    "member_photo": "member has a photo",
    "member_services": "member's linked services",
    "event_weekend": "event on a weekend, local time",
    "event_hour_sin": "event's local hour (sine)",
    "event_hour_cos": "event's local hour (cosine)",
    "venue_log_km": "venue's distance from the group (log km)",
    "venue_km_unknown": "venue's distance unknown",
}
STAT_WORDS = {"log_answers": "earlier answers (log)", "yes_rate": "yes rate so far", "no_seen": "a no before"}


def feature_label(name: str) -> str:
    """`country_vector_ar` -> `country = ar`, `topic=hiking` -> `topic = hiking`, `member_yes_rate` -> `member: yes
    rate so far`: the names the model's pipeline gives its vector slots, in words."""
    if name.startswith("country_vector_"):
        return f"country = {name[len('country_vector_') :]}"
    if name.startswith("topic="):
        return f"topic = {name[len('topic=') :]}"
    if name.startswith("word="):
        return f"name has the word {name[len('word=') :]}"
    if name in FEATURE_WORDS:
        return FEATURE_WORDS[name]
    entity, _, stat = name.partition("_")
    if stat in STAT_WORDS:
        return f"{entity}: {STAT_WORDS[stat]}"
    return name.replace("_", " ")


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


def _utc(value) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _span(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def as_of(newest_batch: dict | None, alive_at: pd.Timestamp | None, now: pd.Timestamp) -> AsOf:
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


def quarantine(lake: Lakehouse, limit: int = 20) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(counts per reason, the most recent rows) of silver's quarantine."""
    df = lake.table(catalogue.SILVER_QUARANTINE, ["topic", "partition", "offset", "reason", "detail", "quarantined_at"])
    counts = df.groupby("reason", as_index=False).size().rename(columns={"size": "rows"})
    return counts.sort_values("rows", ascending=False), df.sort_values("quarantined_at", ascending=False).head(limit)


# ---- models ----------------------------------------------------------------------------------------


def model_record(settings: Settings, name: str = RESPONSE_MODEL) -> dict:
    """The current version's metadata.json; NoData before the first training."""
    try:
        return Registry(settings, name).metadata()
    except NoModelError as error:
        raise NoData(f"no model yet: run `make train` once the chain has data ({error})") from error
    except Exception as error:
        raise ServiceDown(f"the object store at {settings.s3.endpoint} does not answer ({error})") from error


def model_versions(settings: Settings) -> list[str]:
    return Registry(settings).versions()


def categories_record(settings: Settings) -> dict:
    return model_record(settings, CATEGORY_MODEL)


def generations_record(settings: Settings) -> dict:
    data = Store(settings).read(generations.POINTER)
    return json.loads(data) if data else {"generation": "g1"}
