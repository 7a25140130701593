"""Gold's state in Spark's state store: what each RSVP counts now, and how far each Kafka partition has gone.

Gold once kept this state in two Delta tables (`rsvp_state`, `watermarks`), read whole, joined and MERGEd
in every batch: 4-8 s of a 10 s batch under load (docs/benchmarks-history.md). Here it lives
in the query's own state store (RocksDB, in the checkpoint), keyed by Kafka partition:

- `max_mtime` (a value): the greatest mtime seen so far in the partition, which defines lateness;
- `counted_buckets` (a map, bucket -> the states of its RSVPs): the version of each RSVP that the counts hold
  now, grouped by `rsvp_id >> BUCKET_BITS`.

Why buckets: the state server is a round trip from Python to the JVM per call, and with one map entry per
RSVP gold paid two (a `getValue`, an `updateValue`) per RSVP: 0.47 ms a fact above a stateless query's floor,
alone on this machine, 0.15 ms with buckets (docs/benchmarks.md, `make bench-decide-state`). Meetup's RSVP ids grow
with time, so a batch's RSVPs are mostly recent ids that share a few buckets, plus a few older RSVPs changed
again: one `getValue` and one `updateValue` per bucket touched (`bench/decide_state.py` measures both).
A generation written before the buckets has its per-RSVP map (`counted`) moved into buckets by its first
batch after the upgrade, in that batch's state commit (`to_buckets`), and the map emptied.

`GoldState.handleInputRows` sees one partition's facts of one micro-batch, in offset order, and emits one
row per decision (`kind`):

    counted   the fact is the RSVP's newest version: its state is what the counts hold from now on
    replaced  the state it replaced (its contribution is taken back): the RSVP's previous `counted` row
    ignored   a fact not newer than what is counted (a duplicate, an older resend): changes nothing
    late      more than the allowed lateness behind the partition's greatest earlier mtime: listed, not counted
    mark      one per partition and batch: its last offset (`version_offset`) and greatest mtime so far
              (`version_mtime`), for the `watermarks` table

Every fact is one counted, ignored or late row, so the batch's freshness is measured on them.

Exactly once comes with the checkpoint: the state store keeps a version per micro-batch, and a batch run
again after a crash starts from the state as it was before it, so it makes the same decisions and the
foreachBatch writes (Delta transaction ids) skip what had committed. Lateness stays defined on the Kafka
log (the greatest mtime earlier in the partition), not on batches or on Spark's event-time watermark.

Every message of one RSVP is in one Kafka partition (the producer keys by rsvp_id), which is what lets the
state be keyed by partition.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import types as T
from pyspark.sql.streaming.stateful_processor import StatefulProcessor, StatefulProcessorHandle, TimerValues

from pipelines.gold.schemas import RSVP_STATE

COUNTED, REPLACED, IGNORED, LATE, MARK = "counted", "replaced", "ignored", "late", "mark"
FACT_KINDS = (COUNTED, IGNORED, LATE)  # one of these per valid message

STATE_FIELDS = RSVP_STATE.fieldNames()  # rsvp_id, the version, response, ..., topics
STATE_VALUE = T.StructType([f for f in RSVP_STATE.fields if f.name != "rsvp_id"])
DECISIONS = T.StructType(
    [T.StructField("kind", T.StringType(), False)]
    + [T.StructField(f.name, f.dataType, True) for f in RSVP_STATE.fields]
    + [
        T.StructField("watermark_ms", T.LongType(), True),
        T.StructField("kafka_timestamp", T.TimestampType(), True),
    ]
)
_COLUMNS = DECISIONS.fieldNames()
_VALUE_FIELDS = STATE_VALUE.fieldNames()
_INTS = {f.name for f in RSVP_STATE.fields if isinstance(f.dataType, (T.LongType, T.IntegerType))}


def _plain(name: str, value: Any) -> Any:
    """A pandas cell as the state store takes it: None for a missing value, Python ints, lists of strings."""
    if value is None or (not isinstance(value, (list, tuple)) and not hasattr(value, "__len__") and pd.isna(value)):
        return None
    if name in _INTS:
        return int(value)
    if name == "topics":
        return [str(t) for t in value]
    return value


def _plain_topics(value: Any) -> list[str] | None:
    return None if value is None or (not hasattr(value, "__len__") and pd.isna(value)) else [str(t) for t in value]


@dataclass
class Decided:
    rows: pd.DataFrame  # DECISIONS
    counted: dict[int, tuple[Any, ...]]  # rsvp_id -> its state value (STATE_VALUE), for the RSVPs whose state changes
    max_mtime: int  # the partition's greatest mtime after the batch


def decide_partition(
    facts: pd.DataFrame, prior_max: int | None, counted_now: Callable[[int], tuple[Any, ...] | None], lateness_ms: int
) -> Decided:
    """One Kafka partition's facts of one batch -> the decisions (see the module's docstring).

    prior_max: the partition's greatest mtime before the batch (None: nothing seen yet); counted_now(rsvp_id):
    the RSVP's counted state value (STATE_VALUE order), or None. Pure: the state store is read through
    counted_now only, and written by the caller from the result."""
    facts = facts.sort_values("version_offset", kind="stable").reset_index(drop=True)
    mtimes = facts["version_mtime"].astype("int64")
    # the greatest mtime at earlier offsets of the partition: this batch's earlier rows, then before it
    earlier = mtimes.cummax().shift(1)
    if prior_max is not None:
        earlier = earlier.fillna(prior_max).clip(lower=prior_max)
    watermark = earlier - lateness_ms
    late = (mtimes < watermark).fillna(False).astype(bool)

    # the newest admitted fact per RSVP (versions within one partition order by mtime, then offset); one state
    # lookup per RSVP, and Python values only for the states that change: the facts themselves stay columns
    admitted = facts[~late]
    newest = admitted.sort_values(["version_mtime", "version_offset"]).drop_duplicates("rsvp_id", keep="last")
    columns = {name: newest[name].tolist() for name in STATE_FIELDS}
    updates: dict[int, tuple[Any, ...]] = {}
    replaced: list[tuple[Any, ...]] = []
    for i, rsvp_id in enumerate(columns["rsvp_id"]):
        rsvp_id = int(rsvp_id)
        state = counted_now(rsvp_id)
        version = tuple(int(columns[name][i]) for name in ("version_mtime", "version_partition", "version_offset"))
        if state is not None and tuple(state[:3]) >= version:
            continue  # what is counted is as new or newer: this fact changes nothing
        if state is not None:
            replaced.append((rsvp_id, *state))
        updates[rsvp_id] = tuple(_plain(name, columns[name][i]) for name in _VALUE_FIELDS)
    winners = [value[2] for value in updates.values()]  # their offsets, one fact each

    kinds = pd.Series(IGNORED, index=facts.index, dtype=object)
    kinds[late] = LATE
    kinds[~late & facts["version_offset"].isin(winners)] = COUNTED
    decided = facts[[*STATE_FIELDS, "kafka_timestamp"]].assign(kind=kinds, watermark_ms=watermark.where(late))
    decided["topics"] = decided["topics"].map(_plain_topics)
    greatest = int(mtimes.max()) if prior_max is None else max(prior_max, int(mtimes.max()))
    mark = {
        "kind": MARK,
        "version_partition": int(facts["version_partition"].iloc[0]),
        "version_offset": int(facts["version_offset"].max()),
        "version_mtime": greatest,
    }
    whole = {name: "Int64" for name in (*_INTS, "watermark_ms")}  # kept whole: not through float64, which rounds
    replaced_rows = pd.DataFrame(replaced, columns=STATE_FIELDS).assign(kind=REPLACED)
    parts = [decided[late], replaced_rows, decided[~late], pd.DataFrame([mark])]
    rows = pd.concat(
        [part.astype({n: t for n, t in whole.items() if n in part}) for part in parts if len(part)], ignore_index=True
    ).reindex(columns=list(_COLUMNS))
    return Decided(typed(rows), updates, greatest)


def typed(rows: pd.DataFrame) -> pd.DataFrame:
    """Decision rows (DECISIONS' columns) as Arrow takes them: a row leaves out what its kind does not have,
    as null, not NaN; whole numbers with gaps as Int64, not floats."""
    for name in _COLUMNS:
        if name in _INTS or name == "watermark_ms":
            rows[name] = rows[name].astype("Int64")
        elif name != "kafka_timestamp":
            rows[name] = rows[name].astype(object).where(rows[name].notna(), None)
    return rows


BUCKET_BITS = 12  # 4,096 ids a bucket: a few hundred RSVPs of the public stream, a few buckets a batch
BUCKET_KEY = T.StructType([T.StructField("bucket", T.LongType())])
BUCKET_ENTRY = T.StructType([T.StructField("rsvp_id", T.LongType())] + list(STATE_VALUE.fields))
BUCKET = T.StructType([T.StructField("entries", T.ArrayType(BUCKET_ENTRY, False))])


def bucket_of(rsvp_id: int) -> int:
    return rsvp_id >> BUCKET_BITS


def bucket_value(states: dict[int, tuple[Any, ...]]) -> tuple[list[tuple[Any, ...]]]:
    """A bucket's RSVPs (rsvp_id -> state value) as the state store keeps them (BUCKET)."""
    return ([(rsvp_id, *value) for rsvp_id, value in sorted(states.items())],)


def bucket_states(stored: tuple[Any, ...] | None) -> dict[int, tuple[Any, ...]]:
    """A stored bucket (BUCKET, or None) -> rsvp_id -> state value."""
    return {int(e[0]): tuple(e[1:]) for e in stored[0]} if stored is not None else {}


class CountedStates:
    """One partition's counted states for one batch, read and written a bucket at a time.

    load(bucket) -> the bucket's stored value (BUCKET) or None. Pure apart from that reader, so that it is
    tested without a state store (tests/unit/test_gold_state.py)."""

    def __init__(self, rsvp_ids: Iterable[int], load: Callable[[int], tuple[Any, ...] | None]):
        self.buckets = {b: bucket_states(load(b)) for b in sorted({bucket_of(int(i)) for i in rsvp_ids})}
        self._changed: set[int] = set()

    def get(self, rsvp_id: int) -> tuple[Any, ...] | None:
        """The RSVP's counted state value (STATE_VALUE order), or None."""
        return self.buckets[bucket_of(rsvp_id)].get(rsvp_id)

    def set(self, rsvp_id: int, value: tuple[Any, ...]) -> None:
        self.buckets[bucket_of(rsvp_id)][rsvp_id] = value
        self._changed.add(bucket_of(rsvp_id))

    def writes(self) -> Iterator[tuple[int, tuple[list[tuple[Any, ...]]]]]:
        """(bucket, value) for each bucket whose states changed: what to store."""
        for bucket in sorted(self._changed):
            yield bucket, bucket_value(self.buckets[bucket])


def to_buckets(
    per_rsvp: Iterable[tuple[tuple[Any, ...], tuple[Any, ...]]], load: Callable[[int], tuple[Any, ...] | None]
) -> dict[int, tuple[list[tuple[Any, ...]]]]:
    """The per-RSVP map of a generation written before the buckets ((rsvp_id,), state value) pairs -> the
    buckets to store, each merged with what the bucket already holds (which wins: only the bucketed state was
    written after the map)."""
    moved: dict[int, dict[int, tuple[Any, ...]]] = {}
    for (rsvp_id,), value in per_rsvp:
        moved.setdefault(bucket_of(int(rsvp_id)), {})[int(rsvp_id)] = tuple(value)
    return {bucket: bucket_value({**states, **bucket_states(load(bucket))}) for bucket, states in moved.items()}


class GoldState(StatefulProcessor):
    """Decides, per Kafka partition and batch, which facts are late, which are counted and what they replace."""

    def __init__(self, lateness_ms: int):
        self.lateness_ms = lateness_ms

    def init(self, handle: StatefulProcessorHandle) -> None:
        self.max_mtime = handle.getValueState("max_mtime", T.StructType([T.StructField("ms", T.LongType())]))
        self.buckets = handle.getMapState("counted_buckets", BUCKET_KEY, BUCKET)
        # one entry per RSVP: the layout before the buckets, moved into them once (to_buckets), then empty
        self.counted = handle.getMapState(
            "counted", T.StructType([T.StructField("rsvp_id", T.LongType())]), STATE_VALUE
        )

    def handleInputRows(
        self, key: Any, rows: Iterator[pd.DataFrame], timerValues: TimerValues
    ) -> Iterator[pd.DataFrame]:
        facts = pd.concat(list(rows), ignore_index=True)
        if facts.empty:
            return
        stored = self.max_mtime.get() if self.max_mtime.exists() else None
        prior = stored[0] if stored is not None else None
        load = lambda bucket: self.buckets.getValue((bucket,))  # noqa: E731
        if self.counted.exists():  # a generation from before the buckets: its first batch since moves them
            for bucket, value in to_buckets(self.counted.iterator(), load).items():
                self.buckets.updateValue((bucket,), value)
            self.counted.clear()
        states = CountedStates(facts["rsvp_id"].tolist(), load)
        decided = decide_partition(facts, prior, states.get, self.lateness_ms)
        for rsvp_id, value in decided.counted.items():
            states.set(rsvp_id, value)
        for bucket, value in states.writes():
            self.buckets.updateValue((bucket,), value)
        self.max_mtime.update((decided.max_mtime,))
        yield decided.rows

    def close(self) -> None:
        pass


def decide(facts_df: DataFrame, lateness_ms: int) -> DataFrame:
    """A streaming DataFrame of facts (transforms.to_facts) -> the state store's decisions (DECISIONS)."""
    return (
        facts_df.select(*STATE_FIELDS, "kafka_timestamp")
        .groupBy("version_partition")
        .transformWithStateInPandas(
            statefulProcessor=GoldState(lateness_ms),
            outputStructType=DECISIONS,
            outputMode="Append",
            timeMode="None",
        )
    )
