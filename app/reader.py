"""The app's reader of the lakehouse: Delta tables through delta-rs (no JVM), for the generation that
`<root>/CURRENT` names, kept open between page runs.

Every read returns a pandas DataFrame and raises one of two errors the pages turn into plain empty states:
- `NoData`: the table is not there yet (or holds nothing), with the command that fills it;
- `ServiceDown`: the object store or PostgreSQL does not answer, with the setting to check.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from urllib.parse import urlparse

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable

from common.settings import Settings
from lakehouse import catalogue, generations
from lakehouse.aggregates import MEASURES, aggregate, net
from lakehouse.catalogue import Table
from lakehouse.layout import Layout
from pipelines.cadence import FIRST_SNAPSHOT_WORDS, SNAPSHOT_EVERY_WORDS

Filter = tuple[str, str, Any]  # a delta-rs filter: (column, operator, value)

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


class NoData(Exception):
    """Nothing to show yet; the message says what to run."""


class ServiceDown(Exception):
    """A service the page needs does not answer; the message names it."""


# Open tables are kept between page runs and brought up to date with `update_incremental`, which reads only
# the commits since the last read: reopening a table on every refresh re-reads its log from the last
# checkpoint. One lock per table, because Streamlit runs each browser session in its own thread.
_OPEN: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[DeltaTable, threading.Lock]] = {}
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
        if s3.access_key_id and s3.secret_access_key:  # s3.has_keys, spelled so that the types follow
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
            opened = _OPEN.get(key)
        table, lock = opened if opened is not None else (None, threading.Lock())
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

    def table(
        self, entry: Table, columns: list[str] | None = None, filters: list[Filter] | None = None
    ) -> pd.DataFrame:
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

    def since_newest(
        self, entry: Table, column: str, span: pd.Timedelta, columns: list[str] | None = None
    ) -> pd.DataFrame:
        """Rows whose `column` is within `span` of the table's largest value (found from file statistics)."""
        with self.delta(entry) as table:
            actions = pa.table(table.get_add_actions(flatten=True))
            newest = _greatest(actions, f"max.{column}")
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
        where: list[Filter] | None = None,
    ) -> pd.DataFrame:
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
                newest = _greatest(mine, f"max.{column}")
                if newest is not None:
                    filters.append((column, ">=", newest - span.to_pytimedelta()))
            df = table.to_pandas(columns=list(keep), filters=filters)  # every key, to sum a key's rows
        if df.empty and not where:
            raise NoData(f"no gold counts `{name}` yet in generation {self.generation}: run {CHAIN}")
        return net(df, keys)[wanted]


def _greatest(actions: pa.Table, field: str) -> Any:
    """The greatest of a statistic over the table's files; None when a file has none (no safe bound)."""
    if field not in actions.column_names:
        return None
    values = [v for v in actions.column(field).to_pylist() if v is not None]
    return max(values) if values and len(values) == actions.num_rows else None


def _threshold(actions: pa.Table, column: str, limit: int) -> Any:
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
