"""The query page's SQL: read-only, as the reader role, with a statement timeout and a row limit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg2

from common.settings import Settings, SettingsError

ROW_LIMIT = 1000
TIMEOUT_MS = 5000
EXAMPLES = {
    "Answers so far": "SELECT response, count(*) AS rsvps FROM rsvps GROUP BY response ORDER BY rsvps DESC",
    "Busiest groups": (
        "SELECT g.group_name, g.group_city, count(*) AS rsvps\n"
        "FROM rsvps r JOIN events e USING (event_id) JOIN groups g USING (group_id)\n"
        "GROUP BY g.group_name, g.group_city ORDER BY rsvps DESC LIMIT 20"
    ),
    "Most common topics": (
        "SELECT t.topic_name, count(*) AS groups\n"
        "FROM group_topics gt JOIN topics t USING (urlkey)\n"
        "GROUP BY t.topic_name ORDER BY groups DESC LIMIT 20"
    ),
    "Members who said no most": (
        "SELECT m.member_name, count(*) FILTER (WHERE r.response = 'no') AS said_no, count(*) AS rsvps\n"
        "FROM rsvps r JOIN members m USING (member_id)\n"
        "GROUP BY m.member_name ORDER BY said_no DESC LIMIT 20"
    ),
}


class QueryError(Exception):
    """What PostgreSQL said about the query, as it said it."""


@dataclass
class Result:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool


def run_readonly(settings: Settings, query: str, *, row_limit: int = ROW_LIMIT, timeout_ms: int = TIMEOUT_MS) -> Result:
    """Run one statement as the read-only role, in a read-only transaction, within timeout_ms.

    At most row_limit rows come back (`truncated` says when there were more).
    """
    pg = settings.postgres
    try:
        password = pg.password_for(reader=True)
    except SettingsError as error:
        raise QueryError(str(error)) from error
    try:
        conn = psycopg2.connect(
            pg.dsn(reader=True),
            password=password,
            options=f"-c default_transaction_read_only=on -c statement_timeout={int(timeout_ms)} "
            f"-c search_path={pg.schema}",
        )
    except psycopg2.OperationalError as error:
        raise QueryError(f"PostgreSQL at {pg.host}:{pg.port} does not answer: {error}".strip()) from error
    try:
        with conn.cursor() as cur:
            cur.execute(query)
            if cur.description is None:
                return Result([], [], False)
            rows = cur.fetchmany(row_limit + 1)
            return Result([c.name for c in cur.description], rows[:row_limit], len(rows) > row_limit)
    except psycopg2.Error as error:
        raise QueryError((error.pgerror or str(error)).strip()) from error
    finally:
        conn.rollback()
        conn.close()
