"""PostgreSQL from Debian's packages: a cluster of the project's own, a database, a writer and a reader role."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path
from typing import Any

import psycopg2
from psycopg2 import sql

from common.settings import Settings
from stack import procs

NAME = "postgres"
SCHEMA = "meetup"
# PostgreSQL refuses to run as root; as root the cluster belongs to the `postgres` system user.
SERVICE_USER = "postgres"


def _dir(settings: Settings) -> Path:
    return settings.stack_dir / "postgres"


def bin_dir(settings: Settings) -> Path:
    """PG_BIN_DIR, else the newest /usr/lib/postgresql/<version>/bin."""
    if settings.postgres.bin_dir:
        return settings.postgres.bin_dir
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name))
    if not candidates:
        found = shutil.which("pg_ctl")
        if found is None:
            raise procs.StackError(
                "postgres: no PostgreSQL server found; run `make system` (apt-get install postgresql)"
            )
        return Path(found).parent
    return candidates[-1].parent


def _as_service_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", SERVICE_USER, "--", *command]


def _run(command: list[str], what: str) -> None:
    result = subprocess.run(_as_service_user(command), capture_output=True, text=True)
    if result.returncode != 0:
        raise procs.StackError(f"postgres: {what} failed:\n{result.stdout}{result.stderr}")


def admin_password(settings: Settings) -> str:
    if not settings.postgres.admin_password:
        raise procs.StackError(
            "postgres: POSTGRES_ADMIN_PASSWORD is not set (`meetup-stack up` writes it to .stack/env)"
        )
    return settings.postgres.admin_password


def connect(
    settings: Settings, *, dbname: str = "postgres", user: str = "postgres", password: str | None = None
) -> Any:
    return psycopg2.connect(
        host=settings.postgres.host,
        port=settings.postgres.port,
        dbname=dbname,
        user=user,
        password=password if password is not None else admin_password(settings),
        connect_timeout=3,
    )


def healthy(settings: Settings) -> bool:
    if not procs.port_open(settings.postgres.host, settings.postgres.port):
        return False
    try:
        connect(settings).close()
    except psycopg2.OperationalError:
        return False
    return True


def _init_cluster(settings: Settings, base: Path, data_dir: Path) -> None:
    base.mkdir(parents=True, exist_ok=True)
    (base / "run").mkdir(exist_ok=True)
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam(SERVICE_USER)
        except KeyError:
            raise procs.StackError("postgres: no `postgres` system user; run `make system`") from None
        for path in (base, base / "run"):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    pwfile = base / "initdb.pw"
    pwfile.write_text(admin_password(settings) + "\n")
    if os.geteuid() == 0:
        os.chown(pwfile, pwd.getpwnam(SERVICE_USER).pw_uid, -1)
    pwfile.chmod(0o600)
    try:
        _run(
            [
                str(bin_dir(settings) / "initdb"),
                "-D",
                str(data_dir),
                "-U",
                "postgres",
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            ],
            "initdb",
        )
    finally:
        pwfile.unlink(missing_ok=True)


def up(settings: Settings) -> str:
    base = _dir(settings)
    data_dir, log_file = base / "data", base / "postgres.log"
    pg = settings.postgres
    if procs.read_pid(data_dir / "postmaster.pid") is None:
        procs.ensure_port_free(pg.host, pg.port, service=NAME, setting="POSTGRES_PORT")
        if not (data_dir / "PG_VERSION").exists():
            _init_cluster(settings, base, data_dir)
        options = f"-p {pg.port} -k {base / 'run'} -c listen_addresses={pg.host}"
        _run(
            [
                str(bin_dir(settings) / "pg_ctl"),
                "-D",
                str(data_dir),
                "-l",
                str(log_file),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ],
            "start",
        )
    procs.wait_until(lambda: healthy(settings), what=NAME, timeout=60, log_file=log_file)
    bootstrap(settings)
    return f"{NAME:<10} {pg.host}:{pg.port}  (database {pg.database}, roles {pg.user}/{pg.reader_user}, log {log_file})"


def bootstrap(settings: Settings) -> None:
    """Roles, database and schema, idempotently; passwords are (re)set from the environment."""
    pg = settings.postgres
    conn = connect(settings)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for role, password in ((pg.user, pg.password_for()), (pg.reader_user, pg.password_for(reader=True))):
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
                verb = "ALTER" if cur.fetchone() else "CREATE"
                cur.execute(sql.SQL(verb + " ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(role)), (password,))
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (pg.database,))
            if cur.fetchone() is None:
                cur.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(pg.database), sql.Identifier(pg.user))
                )
            # The app's role reads only, and gives up long queries by itself.
            cur.execute(
                sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(sql.Identifier(pg.reader_user))
            )
            cur.execute(sql.SQL("ALTER ROLE {} SET statement_timeout = '15s'").format(sql.Identifier(pg.reader_user)))
    finally:
        conn.close()
    conn = connect(settings, dbname=pg.database)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            writer, reader = sql.Identifier(pg.user), sql.Identifier(pg.reader_user)
            schema = sql.Identifier(SCHEMA)
            cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {}").format(schema, writer))
            cur.execute(sql.SQL("REVOKE CREATE ON SCHEMA public FROM PUBLIC"))
            cur.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema, reader))
            cur.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(schema, reader))
            cur.execute(
                sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} GRANT SELECT ON TABLES TO {}").format(
                    writer, schema, reader
                )
            )
            for role in (writer, reader):
                cur.execute(
                    sql.SQL("ALTER ROLE {} IN DATABASE {} SET search_path = {}").format(
                        role, sql.Identifier(pg.database), schema
                    )
                )
    finally:
        conn.close()


def down(settings: Settings) -> bool:
    data_dir = _dir(settings) / "data"
    if procs.read_pid(data_dir / "postmaster.pid") is None:
        return False
    _run([str(bin_dir(settings) / "pg_ctl"), "-D", str(data_dir), "-m", "fast", "-w", "stop"], "stop")
    return True


def status(settings: Settings) -> tuple[str, bool]:
    """A status line and whether the service is healthy."""
    pg = settings.postgres
    running = procs.read_pid(_dir(settings) / "data" / "postmaster.pid") is not None
    ok = healthy(settings)
    state = "healthy" if ok else ("running but not answering" if running else "stopped")
    return f"{NAME:<10} {pg.host + ':' + str(pg.port):<28} {state}", ok
