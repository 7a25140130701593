"""The PostgreSQL mirror of silver: one transaction per micro-batch, exactly once.

For each batch: claim (query, batch id) in `mirror_ledger` (a retried batch finds it and stops),
COPY each table's rows into a temporary staging table, then `INSERT ... SELECT DISTINCT ON (key)` the
newest staged version per key `... ON CONFLICT (key) DO UPDATE ... WHERE` the staged version is greater,
parents before children. Values only travel as COPY data; identifiers only come from TABLES below, never from data.
While PostgreSQL is unreachable the batch waits and retries, so the stream catches up afterwards.
"""

from __future__ import annotations

import io
import json
import logging
import time
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import reduce
from pathlib import Path
from typing import Any, TypeVar

import psycopg2
from psycopg2 import sql
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from common.settings import PROJECT_ROOT, Settings
from lakehouse.schemas import RSVP_COLUMNS, RSVP_TABLES, TABLE_KEYS, VERSION_COLUMNS

Connection = Any  # a psycopg2 connection (psycopg2 ships no type information)

log = logging.getLogger(__name__)

SQL_DIR = PROJECT_ROOT / "sql"


def ddl_files(sql_dir: Path = SQL_DIR) -> list[tuple[str, str]]:
    """(name, text) of every sql/*.sql file in name order: from the source tree, or from inside the zip
    `meetup-submit` ships (under spark-submit the project may be imported from that zip)."""
    if zipfile.is_zipfile(sql_dir.parent):
        with zipfile.ZipFile(sql_dir.parent) as archive:
            names = sorted(name for name in archive.namelist() if name.startswith("sql/") and name.endswith(".sql"))
            files = [(name.removeprefix("sql/"), archive.read(name).decode()) for name in names]
    else:
        files = [(path.name, path.read_text()) for path in sorted(sql_dir.glob("*.sql"))]
    if not files:
        raise FileNotFoundError(f"no DDL in {sql_dir}: the PostgreSQL mirror needs sql/*.sql")
    return files


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: tuple[str, ...]
    keys: tuple[str, ...]


TABLES: dict[str, TableSpec] = {
    name: TableSpec(name, (*columns, *VERSION_COLUMNS), TABLE_KEYS[name]) for name, columns in RSVP_COLUMNS.items()
}


def collect_rows(tables: Mapping[str, DataFrame]) -> dict[str, list[tuple[Any, ...]]]:
    """Each table's rows, in TABLES' column order, to the driver in one Spark job (not one per table): each
    row travels as JSON beside its table's name, and comes back as a tuple. Timestamps travel as ISO 8601
    text, which COPY reads as they are."""
    parts = [
        df.select(F.lit(name).alias("table_name"), F.to_json(F.struct(*TABLES[name].columns)).alias("row"))
        for name, df in tables.items()
    ]
    rows: dict[str, list[tuple[Any, ...]]] = {name: [] for name in tables}
    if not parts:
        return rows
    for found in reduce(DataFrame.unionByName, parts).collect():
        values = json.loads(found["row"])
        # to_json leaves a null field out of the object
        rows[found["table_name"]].append(tuple(values.get(column) for column in TABLES[found["table_name"]].columns))
    return rows


def connect(settings: Settings) -> Connection:
    pg = settings.postgres
    return psycopg2.connect(pg.dsn(), password=pg.password_for())


DDL_WAIT_S = 60.0  # how long a starting chain waits for PostgreSQL before it gives up with the error


def apply_ddl(settings: Settings, sql_dir: Path = SQL_DIR, *, give_up_after: float = DDL_WAIT_S) -> list[str]:
    """Run every sql/*.sql file in name order (each is idempotent), waiting out an outage for up to
    give_up_after seconds (wait_out); returns the files applied."""
    files = ddl_files(sql_dir)
    wait_out(lambda: _apply_ddl(settings, files), "the DDL", give_up_after=give_up_after)
    return [name for name, _ in files]


def _apply_ddl(settings: Settings, files: list[tuple[str, str]]) -> None:
    conn = connect(settings)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(settings.postgres.schema)))
            cur.execute(sql.SQL("SET LOCAL search_path = {}").format(sql.Identifier(settings.postgres.schema)))
            cur.execute("SELECT pg_advisory_xact_lock(hashtext('meetup-rsvps ddl'))")  # two jobs starting at once
            for _, text in files:
                cur.execute(text)
            # the app's query page reads as the reader role, whichever schema the mirror writes
            schema, reader = sql.Identifier(settings.postgres.schema), sql.Identifier(settings.postgres.reader_user)
            cur.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema, reader))
            cur.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(schema, reader))
    finally:
        conn.close()


def _copy_text(value: object) -> str:
    """One value in COPY's text format."""
    if value is None:
        return "\\N"
    if isinstance(value, datetime):
        stamp = value if value.tzinfo else value.replace(tzinfo=UTC)
        return stamp.isoformat()
    if isinstance(value, bool):
        return "t" if value else "f"
    text = str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def copy_buffer(rows: Iterable[Sequence[Any]]) -> io.StringIO:
    buffer = io.StringIO()
    for row in rows:
        buffer.write("\t".join(_copy_text(value) for value in row))
        buffer.write("\n")
    buffer.seek(0)
    return buffer


def upsert_statement(spec: TableSpec, staging: str, schema: str) -> sql.Composed:
    """INSERT the staged rows, the newest version per key of them (a batch may stage several versions of a
    key: PostgreSQL picks the newest, so Spark need not); on a key conflict, update only when the staged
    version is greater."""
    columns = sql.SQL(", ").join(map(sql.Identifier, spec.columns))
    keys = sql.SQL(", ").join(map(sql.Identifier, spec.keys))
    newest_first = sql.SQL(", ").join(sql.SQL("{} DESC").format(sql.Identifier(c)) for c in VERSION_COLUMNS)
    head = sql.SQL(
        "INSERT INTO {target} ({columns}) SELECT DISTINCT ON ({keys}) {columns} FROM {staging} "
        "ORDER BY {keys}, {newest_first} ON CONFLICT ({keys}) "
    ).format(
        target=sql.Identifier(schema, spec.name),
        columns=columns,
        staging=sql.Identifier(staging),
        keys=keys,
        newest_first=newest_first,
    )
    updates = [sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in spec.columns if c not in spec.keys]
    newer = sql.SQL("({}) > ({})").format(
        sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(sql.Identifier(c)) for c in VERSION_COLUMNS),
        sql.SQL(", ").join(
            sql.SQL("{}.{}").format(sql.Identifier(spec.name), sql.Identifier(c)) for c in VERSION_COLUMNS
        ),
    )
    return head + sql.SQL("DO UPDATE SET {} WHERE {}").format(sql.SQL(", ").join(updates), newer)


def apply_batch(
    conn: Connection,
    schema: str,
    query_name: str,
    batch_id: int,
    tables: Mapping[str, Iterable[Sequence[Any]]],
) -> bool:
    """Apply one micro-batch in one transaction; False when the ledger says it was applied before."""
    with conn, conn.cursor() as cur:
        staged = {}
        for name, rows in tables.items():
            spec = TABLES[name]
            staging = f"stage_{name}"
            cur.execute(
                sql.SQL("CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP").format(
                    sql.Identifier(staging), sql.Identifier(schema, name)
                )
            )
            buffer = copy_buffer(rows)
            cur.copy_expert(
                sql.SQL("COPY {} ({}) FROM STDIN").format(
                    sql.Identifier(staging), sql.SQL(", ").join(map(sql.Identifier, spec.columns))
                ),
                buffer,
            )
            staged[name] = (staging, cur.rowcount)
        total = sum(count for _, count in staged.values())
        cur.execute(
            sql.SQL(
                "INSERT INTO {} (query_name, batch_id, rows_applied) VALUES (%s, %s, %s) "
                "ON CONFLICT DO NOTHING RETURNING 1"
            ).format(sql.Identifier(schema, "mirror_ledger")),
            (query_name, batch_id, total),
        )
        if cur.fetchone() is None:
            conn.rollback()
            return False
        for name in RSVP_TABLES:
            if name in staged:
                cur.execute(upsert_statement(TABLES[name], staged[name][0], schema))
    return True


# What a PostgreSQL that went away looks like through psycopg2: OperationalError while connecting or in a
# statement, and InterfaceError ("connection already closed") from the rollback of a transaction whose
# connection was cut (pg_terminate_backend, a restart) inside `with conn:`. Either way the transaction did
# not commit, or committed with its ledger row, so doing the batch again is safe.
TRANSIENT = (psycopg2.OperationalError, psycopg2.InterfaceError)
T = TypeVar("T")


def wait_out(
    attempt: Callable[[], T],
    what: str,
    *,
    give_up_after: float = 600.0,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """attempt(), again after each TRANSIENT error (exponential backoff from 0.5 s, capped at 10 s) until it
    succeeds or give_up_after seconds have passed; then the last error is raised."""
    deadline = time.monotonic() + give_up_after
    delay = 0.5
    while True:
        try:
            return attempt()
        except TRANSIENT as error:
            if time.monotonic() + delay > deadline:
                raise
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else "connection lost"
            log.warning("PostgreSQL unavailable (%s: %s); %s retries in %.1fs", type(error).__name__, first_line,
                        what, delay)  # fmt: skip
            sleep(delay)
            delay = min(delay * 2, 10.0)


def apply_with_retry(
    connect_fn: Callable[[], Connection],
    schema: str,
    query_name: str,
    batch_id: int,
    tables: Mapping[str, Sequence[Sequence[Any]]],
    *,
    give_up_after: float = 600.0,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """apply_batch on a new connection, waiting out a PostgreSQL outage, before or inside the transaction
    (wait_out), for up to give_up_after."""

    def attempt() -> bool:
        conn = connect_fn()
        try:
            return apply_batch(conn, schema, query_name, batch_id, tables)
        finally:
            conn.close()

    return wait_out(attempt, f"batch {batch_id}", give_up_after=give_up_after, sleep=sleep)
