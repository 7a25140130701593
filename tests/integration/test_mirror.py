"""The PostgreSQL mirror against the real server: DDL, ledger, newest-wins upserts, outage retry."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import psycopg2
import pytest

from common.settings import Settings
from pipelines.silver import mirror

pytestmark = pytest.mark.integration


@pytest.fixture
def pg(stack: Settings, unique: str) -> Settings:
    settings = replace(stack, postgres=replace(stack.postgres, schema=unique))
    assert mirror.apply_ddl(settings) == ["001_silver.sql"]
    assert mirror.apply_ddl(settings) == ["001_silver.sql"], "the DDL can be applied twice"
    return settings


def batch(guests: int, mtime: int, offset: int) -> dict[str, list[tuple]]:
    version = (mtime, 0, offset)
    return {
        "venues": [],
        "groups": [(1, "g", "g-url", "Tab\there", None, "us", 40.5, -73.9, *version)],
        "topics": [("t", "Topic with \\ backslash\nand newline", *version)],
        "members": [(5, "Member 1", None, *version)],
        "events": [("zwfmhsyccmbrb", 1, None, "ev", "https://x/", None, *version)],
        "rsvps": [(9, "zwfmhsyccmbrb", 5, datetime(2021, 9, 2, 12, 0), "yes", guests, "public", *version)],
        "member_services": [],
        "group_topics": [(1, "t", *version)],
    }


def rows(settings: Settings, query: str) -> list[tuple]:
    conn = mirror.connect(settings)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SET search_path = {settings.postgres.schema}")
            cur.execute(query)
            return cur.fetchall()
    finally:
        conn.close()


def test_ledger_makes_a_retried_batch_a_no_op_and_versions_decide(pg):
    conn = mirror.connect(pg)
    try:
        assert mirror.apply_batch(conn, pg.postgres.schema, "q", 0, batch(guests=1, mtime=2000, offset=1))
        assert not mirror.apply_batch(conn, pg.postgres.schema, "q", 0, batch(guests=7, mtime=9000, offset=9))
        assert mirror.apply_batch(conn, pg.postgres.schema, "q", 1, batch(guests=2, mtime=1000, offset=2))  # older
    finally:
        conn.close()
    assert rows(pg, "SELECT guests, version_mtime FROM rsvps") == [(1, 2000)]
    assert rows(pg, "SELECT topic_name FROM topics") == [("Topic with \\ backslash\nand newline",)]
    assert rows(pg, "SELECT group_city FROM groups") == [("Tab\there",)]
    assert rows(pg, "SELECT query_name, batch_id FROM mirror_ledger ORDER BY batch_id") == [("q", 0), ("q", 1)]


def test_an_outage_is_waited_out_then_the_batch_applies_once(pg):
    attempts = []

    def flaky_connect():
        attempts.append(1)
        if len(attempts) <= 2:  # what psycopg2 raises while the server is down
            return psycopg2.connect(host=pg.postgres.host, port=1, dbname="x", user="x", connect_timeout=1)
        return mirror.connect(pg)

    slept = []
    applied = mirror.apply_with_retry(flaky_connect, pg.postgres.schema, "q", 3, batch(1, 5000, 1), sleep=slept.append)
    assert applied and len(attempts) == 3 and slept == [0.5, 1.0]
    assert rows(pg, "SELECT count(*) FROM rsvps") == [(1,)]


class CutOnce(list):
    """A table's rows that, the first time the mirror reads them (inside its transaction, between the ledger's
    claim and the upserts' COPY), have PostgreSQL end that transaction's connection, as a restart would."""

    def __init__(self, rows, settings: Settings, backend_pid):
        super().__init__(rows)
        self.settings, self.backend_pid, self.cuts = settings, backend_pid, 0

    def __iter__(self):
        if self.cuts == 0:
            self.cuts += 1
            admin = mirror.connect(self.settings)
            try:
                with admin, admin.cursor() as cur:
                    cur.execute("SELECT pg_terminate_backend(%s)", (self.backend_pid(),))
                    assert cur.fetchone() == (True,)
            finally:
                admin.close()
        return super().__iter__()


def test_a_connection_cut_inside_the_mirrors_transaction_is_waited_out_and_the_batch_applies_once(pg):
    connections = []

    def connect():
        connections.append(mirror.connect(pg))
        return connections[-1]

    tables = batch(guests=3, mtime=4000, offset=2)
    tables["rsvps"] = CutOnce(tables["rsvps"], pg, lambda: connections[-1].get_backend_pid())
    # what the cut does without a retry: psycopg2's rollback of the cut transaction raises InterfaceError
    with pytest.raises(psycopg2.InterfaceError, match="connection already closed"):
        mirror.apply_batch(connect(), pg.postgres.schema, "q", 4, tables)
    assert rows(pg, "SELECT count(*) FROM mirror_ledger") == [(0,)], "the cut transaction committed nothing"

    tables["rsvps"].cuts = 0  # cut again, now under the retry
    slept = []
    applied = mirror.apply_with_retry(connect, pg.postgres.schema, "q", 4, tables, sleep=slept.append)
    assert applied and slept == [0.5] and tables["rsvps"].cuts == 1
    assert rows(pg, "SELECT rsvp_id, guests FROM rsvps") == [(9, 3)]
    assert rows(pg, "SELECT query_name, batch_id FROM mirror_ledger") == [("q", 4)]
    assert not mirror.apply_with_retry(connect, pg.postgres.schema, "q", 4, tables), "and only once"


def test_the_ddl_waits_out_a_server_that_is_not_there_yet(pg, monkeypatch):
    real_connect, attempts = mirror.connect, []

    def flaky_connect(settings):
        attempts.append(1)
        if len(attempts) == 1:
            return psycopg2.connect(host=pg.postgres.host, port=1, dbname="x", user="x", connect_timeout=1)
        return real_connect(settings)

    monkeypatch.setattr(mirror, "connect", flaky_connect)
    assert mirror.apply_ddl(pg) == ["001_silver.sql"] and len(attempts) == 2


def test_the_reader_role_cannot_write_to_the_mirror(stack):
    mirror.apply_ddl(stack)  # the real schema the app reads
    reader = psycopg2.connect(stack.postgres.dsn(reader=True), password=stack.postgres.password_for(reader=True))
    try:
        with pytest.raises(psycopg2.Error), reader.cursor() as cur:
            cur.execute("DELETE FROM meetup.rsvps")
        reader.rollback()
        with reader.cursor() as cur:
            cur.execute("SELECT count(*) >= 0 FROM meetup.rsvps")
            assert cur.fetchone() == (True,)
    finally:
        reader.close()


def test_several_versions_of_a_key_in_one_batch_leave_the_newest(pg):
    """The hot-path mirror stages every message's rows (no newest-per-key in Spark): PostgreSQL keeps the
    greatest version per key, whatever the staging order, and an older batch still changes nothing."""
    newest, older, oldest = batch(3, 3000, 5), batch(2, 3000, 4), batch(1, 1000, 9)
    mixed = {name: older[name] + newest[name] + oldest[name] for name in newest}
    conn = mirror.connect(pg)
    try:
        assert mirror.apply_batch(conn, pg.postgres.schema, "q", 0, mixed)
        assert mirror.apply_batch(conn, pg.postgres.schema, "q", 1, batch(9, 2999, 99))  # older than the newest
    finally:
        conn.close()
    assert rows(pg, "SELECT guests, version_mtime, version_offset FROM rsvps") == [(3, 3000, 5)]
    assert rows(pg, "SELECT count(*) FROM group_topics") == [(1,)]
