"""The app's query page against the real PostgreSQL mirror, as the read-only role."""

from __future__ import annotations

import psycopg2
import pytest
from psycopg2 import sql
from streamlit.testing.v1 import AppTest

from common.settings import PROJECT_ROOT

pytestmark = pytest.mark.integration
QUERY = "SELECT response, count(*) AS rsvps FROM rsvps GROUP BY response ORDER BY response"


def test_the_query_page_reads_the_mirror_and_refuses_a_write(real_run, monkeypatch):
    settings, _, _ = real_run
    monkeypatch.setenv("POSTGRES_SCHEMA", settings.postgres.schema)
    conn = psycopg2.connect(settings.postgres.dsn(), password=settings.postgres.password_for())
    try:
        with conn.cursor() as cur:  # the same counts, as the writer
            cur.execute(sql.SQL("SET search_path = {}").format(sql.Identifier(settings.postgres.schema)))
            cur.execute(QUERY)
            expected = cur.fetchall()
    finally:
        conn.close()

    at = AppTest.from_file(str(PROJECT_ROOT / "app" / "views" / "query.py"), default_timeout=60).run()
    at.text_area[0].set_value(QUERY)
    at.button(key="query_run").click().run()
    assert not at.exception and not at.error
    shown = [tuple(row) for row in at.dataframe[0].value.itertuples(index=False)]
    assert shown == expected and sum(n for _, n in shown) == 3260

    at.text_area[0].set_value("DELETE FROM rsvps")
    at.button(key="query_run").click().run()
    assert at.error and "read-only transaction" in at.error[0].value
