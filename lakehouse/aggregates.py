"""Gold's count aggregates, and the one Delta table that holds them all (no Spark here: the app reads it too).

Gold counts yes, no and guests under six sets of keys (the *aggregates*: per region and minute, per topic
and hour, ...). They live in one long table, `gold/counts`, partitioned by `aggregate`: a row is one key of
one aggregate, with the key columns that aggregate does not use left null.

A row is a change, not a total: each gold batch appends its net change per key (one blind append, the
cheapest commit there is), and a key's count is the sum of its rows. The slow path folds the rows of past
batches into one row per key now and then (gold/fold.py), so a reader sums a few rows, not thousands. See
docs/benchmarks-history.md for the measurements that led here (six MERGEs, then one).

Each aggregate reads as a table of its own, its keys and net measures only:

    Lakehouse.counts("rsvps_by_region_minute")             # the app (pandas, one partition read)
    transforms.count_view(counts_df, "topics_by_hour")     # Spark
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa

MEASURES = ("yes", "no", "guests")
COUNTS_TABLE = "counts"

# every key column of the long table and its Arrow type, in the table's column order
COUNT_KEYS: dict[str, pa.DataType] = {
    "minute": pa.timestamp("us", tz="UTC"),
    "hour": pa.timestamp("us", tz="UTC"),
    "country": pa.string(),
    "state": pa.string(),
    "city": pa.string(),
    "urlkey": pa.string(),
    "group_id": pa.int64(),
    "event_id": pa.string(),
    "stream": pa.string(),
}


@dataclass(frozen=True)
class Aggregate:
    """One count aggregate: the keys a state is counted under and the measures summed."""

    name: str
    keys: tuple[str, ...]
    explode_topics: bool = False


AGGREGATES = (
    Aggregate("rsvps_by_region_minute", ("minute", "country", "state", "city")),
    Aggregate("rsvps_by_region_hour", ("hour", "country", "state", "city")),
    Aggregate("topics_by_hour", ("hour", "urlkey"), explode_topics=True),
    Aggregate("groups_by_minute", ("minute", "group_id")),
    Aggregate("events_by_minute", ("event_id", "minute")),
    Aggregate("rsvp_totals", ("stream",)),
)
BY_NAME = {aggregate.name: aggregate for aggregate in AGGREGATES}


def aggregate(name: str) -> Aggregate:
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"no count aggregate {name!r}; there are {', '.join(BY_NAME)}") from None


def arrow_schema() -> pa.Schema:
    """The long table's schema, as Arrow sees it."""
    return pa.schema(
        [pa.field("aggregate", pa.string(), nullable=False)]
        + [pa.field(key, dtype) for key, dtype in COUNT_KEYS.items()]
        + [pa.field(m, pa.int64(), nullable=False) for m in MEASURES]
        + [pa.field("batch_id", pa.int64())]
    )


def net(df: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """pandas rows of one aggregate -> one row per key with its summed measures, keys summing to zero left
    out (as transforms.net_counts does in Spark)."""
    measures = list(MEASURES)
    summed = df.groupby(list(keys), dropna=False, sort=False)[measures].sum().reset_index()
    return summed[(summed[measures] != 0).any(axis=1)].reset_index(drop=True)


def long_table(frames: dict[str, pd.DataFrame]) -> pa.Table:
    """{aggregate name: pandas frame of its keys and measures} -> the long table's rows (for writers outside
    Spark: the app's tests and benchmarks)."""
    import pandas as pd

    schema = arrow_schema()
    parts = []
    for name, df in frames.items():
        keys = aggregate(name).keys
        columns = {"aggregate": pd.Series([name] * len(df), dtype=object)}
        for key in COUNT_KEYS:
            columns[key] = df[key].reset_index(drop=True) if key in keys else pd.Series([None] * len(df), dtype=object)
        for m in MEASURES:
            columns[m] = df[m].reset_index(drop=True).astype("int64")
        columns["batch_id"] = pd.Series([None] * len(df), dtype=object)
        parts.append(pa.Table.from_pandas(pd.DataFrame(columns), schema=schema, preserve_index=False))
    return pa.concat_tables(parts) if parts else schema.empty_table()
