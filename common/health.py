"""Pre-flight checks: each fails fast with a one-line error naming the service and its setting.

Jobs call `preflight` before starting Spark, so a stopped broker, store or database is reported in
seconds as "Kafka at 127.0.0.1:9092 is not reachable (KAFKA_BOOTSTRAP_SERVERS) ..." instead of
surfacing minutes later as a retry storm deep inside the JVM.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import boto3
import psycopg2
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from common.cli import USAGE, CommandError
from common.settings import Settings, SettingsError, load_settings

HINT = "start the local stack with `make stack-up`, or fix the setting"


class ServiceUnavailable(RuntimeError):
    """A required service cannot be reached or refused us; the message names it and the setting."""


def s3_client(settings: Settings, *, timeout: float = 5) -> Any:
    """A boto3 S3 client for S3_ENDPOINT, with the settings' keys, else the AWS provider chain's (looked up now)."""
    s3 = settings.s3
    session = (
        boto3.session.Session(
            aws_access_key_id=s3.access_key_id,
            aws_secret_access_key=s3.secret_access_key,
            aws_session_token=s3.session_token,
        )
        if s3.has_keys
        else boto3.session.Session()
    )
    return session.client(
        "s3",
        endpoint_url=settings.s3.endpoint,
        region_name=settings.s3.region,
        config=Config(
            s3={"addressing_style": "path" if settings.s3.path_style else "auto"},
            connect_timeout=timeout,
            read_timeout=timeout * 6,
            retries={"max_attempts": 2},
        ),
    )


def kafka_admin(settings: Settings, *, timeout_ms: int = 3000) -> AdminClient:
    return AdminClient(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "socket.connection.setup.timeout.ms": timeout_ms,
            "log_level": 0,  # the check reports a failure in one line; librdkafka would log each retry
            **settings.kafka.client_config,
        }
    )


def check_kafka(settings: Settings, *, timeout: float = 5) -> None:
    try:
        metadata = kafka_admin(settings).list_topics(timeout=timeout)
    except KafkaException as error:
        raise ServiceUnavailable(
            f"Kafka at {settings.kafka.bootstrap_servers} is not reachable (KAFKA_BOOTSTRAP_SERVERS): "
            f"{error.args[0].str()}; {HINT}"
        ) from None
    if not metadata.brokers:
        raise ServiceUnavailable(f"Kafka at {settings.kafka.bootstrap_servers} reports no brokers; {HINT}")


def check_s3(settings: Settings, *, require_bucket: bool = True, timeout: float = 5) -> None:
    client = s3_client(settings, timeout=timeout)
    where = f"S3 at {settings.s3.endpoint} (S3_ENDPOINT)"
    try:
        if require_bucket and settings.bucket:
            client.head_bucket(Bucket=settings.bucket)
        else:
            client.list_buckets()
    except NoCredentialsError:
        raise ServiceUnavailable(f"{where}: no credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)") from None
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "?")
        if code in ("404", "NoSuchBucket"):
            raise ServiceUnavailable(
                f"{where}: bucket {settings.bucket!r} does not exist (LAKEHOUSE_ROOT={settings.lakehouse_root})"
            ) from None
        if code in ("403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied"):
            raise ServiceUnavailable(
                f"{where} refused the credentials ({code}; AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)"
            ) from None
        raise ServiceUnavailable(f"{where} answered {code}: {error}") from None
    except BotoCoreError as error:
        raise ServiceUnavailable(f"{where} is not reachable: {error}; {HINT}") from None


def check_postgres(settings: Settings, *, reader: bool = False, timeout: int = 5) -> None:
    pg = settings.postgres
    where = f"PostgreSQL at {pg.host}:{pg.port} (POSTGRES_HOST / POSTGRES_PORT)"
    try:
        psycopg2.connect(
            pg.dsn(reader=reader, connect_timeout=timeout), password=pg.password_for(reader=reader)
        ).close()
    except psycopg2.OperationalError as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else "connection failed"
        raise ServiceUnavailable(f"{where}: {detail}; {HINT}") from None


CHECKS: dict[str, Callable[[Settings], None]] = {"kafka": check_kafka, "s3": check_s3, "postgres": check_postgres}


def preflight(settings: Settings, services: Iterable[str] = ("kafka", "s3", "postgres")) -> None:
    """Check each named service; raise one ServiceUnavailable listing every failure."""
    failures = []
    for name in services:
        if name == "s3" and settings.bucket is None:
            continue  # a local-path lakehouse needs no object store
        try:
            CHECKS[name](settings)
        except ServiceUnavailable as error:
            failures.append(str(error))
    if failures:
        raise ServiceUnavailable("\n".join(failures))


def settings_for(services: Iterable[str] = ()) -> Settings:
    """The settings of a command line, once the services it needs have answered.

    A malformed or missing setting, or a service that cannot be reached, ends the command here, before
    any Spark starts (a `CommandError` the command's `cli.command` reports): exit status 2 and one line per
    problem, `<command>: <what> (<the setting>) ...`.
    """
    try:
        settings = load_settings()
        preflight(settings, services)
    except (SettingsError, ServiceUnavailable) as error:
        raise CommandError(str(error), status=USAGE) from None
    return settings
