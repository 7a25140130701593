"""The one settings object: built once at an entry point from environment variables, then passed down.

Every variable the project reads is a field here (docs/operations.md, "Settings", lists them). Every value has a
local default that matches the stack `make stack-up` starts. Secrets (S3 keys, database passwords) never
have a default in code: the local stack generates them on its first start and writes them to
`.stack/env`, which `load_settings()` reads *under* the real environment, so an exported variable always
wins and a deployment simply sets the variables itself. Nothing is written back into `os.environ`: the
settings carry the credentials to boto3, libpq, delta-rs and Spark's S3A themselves, and a child process
gets an explicit environment built from them (`Settings.child_env`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

PROJECT_ROOT = Path(__file__).resolve().parent.parent

STREAMS = ("rsvps", "event_comments", "photos")
DEFAULT_STACK_DIR = PROJECT_ROOT / ".stack"
DEFAULT_INGEST_URL = "ws://127.0.0.1:8765"
DEFAULT_CONTROLLER_PORT = 9093  # the local KRaft controller's port (node N: this plus N's offset)


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the environment variable."""


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def host_port(address: str, setting: str) -> tuple[str, int]:
    """Split 'host:port' (the first of a comma-separated list), naming the setting on error."""
    first = address.split(",")[0].strip()
    host, sep, port = first.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise SettingsError(f"{setting} must look like host:port, got {address!r}")
    return host, int(port)


SASL_LOGIN_MODULES = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}


def _prefixed(env: Mapping[str, str], prefix: str) -> dict[str, str]:
    """KAFKA_CLIENT_SASL_USERNAME=x -> {"sasl.username": "x"} for every variable with this prefix."""
    return {key[len(prefix) :].lower().replace("_", "."): value for key, value in env.items() if key.startswith(prefix)}


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap_servers: str = "127.0.0.1:9092"
    topic_prefix: str = "meetup"
    partitions: int = 3
    replication_factor: int = 1
    retention_ms: int = 7 * 24 * 3600 * 1000
    controller_port: int = DEFAULT_CONTROLLER_PORT  # only `meetup-stack up` uses it, for the local broker
    # Extra librdkafka settings (security.protocol, sasl.*, ssl.*) keep their own key names.
    client_config: Mapping[str, str] = field(default_factory=dict)
    # Java client settings for Spark's Kafka source only, over what java_config() derives.
    java_client_config: Mapping[str, str] = field(default_factory=dict)

    def topic(self, stream: str) -> str:
        return f"{self.topic_prefix}.{stream}"

    def java_config(self) -> dict[str, str]:
        """The same security settings for the Java client inside Spark's Kafka source.

        One set of KAFKA_CLIENT_* variables serves the Python clients (librdkafka) and Spark (the Java
        client): the keys the two spell differently are translated here, the rest keep their names, and
        KAFKA_JAVA_CLIENT_* variables are added last for what has no librdkafka spelling.
        """
        config = dict(self.client_config)
        mechanism = config.pop("sasl.mechanisms", None) or config.pop("sasl.mechanism", None)
        username, password = config.pop("sasl.username", None), config.pop("sasl.password", None)
        if mechanism:
            config["sasl.mechanism"] = mechanism
        if username is not None and password is not None:
            module = SASL_LOGIN_MODULES.get((mechanism or "PLAIN").upper())
            if module is None:
                raise SettingsError(
                    f"KAFKA_CLIENT_SASL_USERNAME/PASSWORD work with PLAIN or SCRAM-SHA-256/512, not {mechanism}; "
                    "give Spark a KAFKA_JAVA_CLIENT_SASL_JAAS_CONFIG instead"
                )
            escaped = [value.replace("\\", "\\\\").replace('"', '\\"') for value in (username, password)]
            config["sasl.jaas.config"] = f'{module} required username="{escaped[0]}" password="{escaped[1]}";'
        ca = config.pop("ssl.ca.location", None)
        if ca:
            config.update({"ssl.truststore.type": "PEM", "ssl.truststore.location": ca})
        if config.get("ssl.endpoint.identification.algorithm") == "none":
            config["ssl.endpoint.identification.algorithm"] = ""  # the Java client's spelling of "off"
        config.update(self.java_client_config)
        return config

    @property
    def addresses(self) -> list[str]:
        return [address.strip() for address in self.bootstrap_servers.split(",") if address.strip()]

    @property
    def min_insync_replicas(self) -> int:
        """2 once there are replicas to spare: with acks=all a write then survives losing one broker."""
        return min(2, self.replication_factor)


@dataclass(frozen=True)
class S3Settings:
    endpoint: str = "http://127.0.0.1:9000"
    region: str = "us-east-1"
    path_style: bool = True
    # None: the AWS provider chain (profile, instance role) finds them, in boto3, delta-rs and S3A alike.
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)

    @property
    def has_keys(self) -> bool:
        return bool(self.access_key_id and self.secret_access_key)

    @property
    def secure(self) -> bool:
        return self.endpoint.startswith("https://")


@dataclass(frozen=True)
class PostgresSettings:
    host: str = "127.0.0.1"
    port: int = 5433
    database: str = "meetup"
    schema: str = "meetup"
    user: str = "meetup_writer"
    password: str | None = field(default=None, repr=False)
    reader_user: str = "meetup_reader"
    reader_password: str | None = field(default=None, repr=False)
    # The local stack only: the superuser's password and where PostgreSQL's programs are (None: the newest
    # /usr/lib/postgresql/<version>/bin, else pg_ctl on PATH).
    admin_password: str | None = field(default=None, repr=False)
    bin_dir: Path | None = None

    def dsn(self, *, reader: bool = False, connect_timeout: int = 5) -> str:
        """libpq keyword DSN; the password is passed separately so it never sits in a URL."""
        user = self.reader_user if reader else self.user
        return f"host={self.host} port={self.port} dbname={self.database} user={user} connect_timeout={connect_timeout}"

    def password_for(self, *, reader: bool = False) -> str:
        password = self.reader_password if reader else self.password
        if not password:
            name = "POSTGRES_READER_PASSWORD" if reader else "POSTGRES_PASSWORD"
            raise SettingsError(f"{name} is not set (run `make stack-up` for the local stack)")
        return password

    @property
    def jdbc_url(self) -> str:
        return f"jdbc:postgresql://{self.host}:{self.port}/{self.database}"


@dataclass(frozen=True)
class SparkSettings:
    master: str = "local[*]"
    driver_memory: str = "4g"  # 24 GB machines; silver's MERGEs of a 100k-row batch fit with room
    shuffle_partitions: int = 4
    ui_enabled: bool = True
    jars_dir: Path = PROJECT_ROOT / ".stack" / "jars" / "spark"
    # The local standalone cluster `meetup-stack up` starts when `master` is spark://127.0.0.1:PORT.
    workers: int = 2
    worker_cores: int = 1
    worker_memory: str = "2g"
    master_webui_port: int = 8080  # worker N's UI listens on this port + N
    executor_memory: str = "1g"
    codegen: bool = False  # Spark's code generation: see common/spark.py, CODEGEN_OFF


@dataclass(frozen=True)
class Settings:
    lakehouse_root: str = "s3a://meetup-lakehouse/lake"
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    s3: S3Settings = field(default_factory=S3Settings)
    postgres: PostgresSettings = field(default_factory=PostgresSettings)
    spark: SparkSettings = field(default_factory=SparkSettings)
    stack_dir: Path = DEFAULT_STACK_DIR
    ingest_url: str = DEFAULT_INGEST_URL  # the stream endpoint meetup-ingest follows when --url is not given
    log_level: str = "INFO"
    app_warm_up: bool = True  # the app starts its scoring session in the background at its start
    app_login: bool = False  # set by meetup-app for its Streamlit process: pages ask for a login

    @property
    def bucket(self) -> str | None:
        """The S3 bucket of the lakehouse root, or None when the root is a local path."""
        parsed = urlparse(self.lakehouse_root)
        return parsed.netloc if parsed.scheme in ("s3a", "s3") else None

    def path(self, *parts: str) -> str:
        """A location under the lakehouse root: path('bronze', 'rsvps')."""
        return "/".join([self.lakehouse_root.rstrip("/"), *parts])

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        stack_dir = find_stack_dir(env)
        bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS", KafkaSettings.bootstrap_servers)
        kafka = KafkaSettings(
            bootstrap_servers=bootstrap,
            topic_prefix=env.get("KAFKA_TOPIC_PREFIX", KafkaSettings.topic_prefix),
            partitions=_int(env, "KAFKA_TOPIC_PARTITIONS", KafkaSettings.partitions),
            # One replica per listed broker, up to 3, unless set: the local three-broker cluster gets 3.
            replication_factor=_int(env, "KAFKA_REPLICATION_FACTOR", min(3, len(bootstrap.split(",")))),
            retention_ms=_int(env, "KAFKA_RETENTION_MS", KafkaSettings.retention_ms),
            controller_port=_int(env, "KAFKA_CONTROLLER_PORT", KafkaSettings.controller_port),
            client_config=_prefixed(env, "KAFKA_CLIENT_"),
            java_client_config=_prefixed(env, "KAFKA_JAVA_CLIENT_"),
        )
        host_port(kafka.bootstrap_servers, "KAFKA_BOOTSTRAP_SERVERS")
        kafka.java_config()  # a SASL setting Spark cannot use fails here, at start, naming the variables
        s3 = S3Settings(
            endpoint=env.get("S3_ENDPOINT", S3Settings.endpoint),
            region=env.get("AWS_REGION", S3Settings.region),
            path_style=_bool(env, "S3_PATH_STYLE", S3Settings.path_style),
            access_key_id=env.get("AWS_ACCESS_KEY_ID") or None,
            secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
            session_token=env.get("AWS_SESSION_TOKEN") or None,
        )
        if not s3.endpoint.startswith(("http://", "https://")):
            raise SettingsError(f"S3_ENDPOINT must start with http:// or https://, got {s3.endpoint!r}")
        postgres = PostgresSettings(
            host=env.get("POSTGRES_HOST", PostgresSettings.host),
            port=_int(env, "POSTGRES_PORT", PostgresSettings.port),
            database=env.get("POSTGRES_DB", PostgresSettings.database),
            schema=env.get("POSTGRES_SCHEMA", PostgresSettings.schema),
            user=env.get("POSTGRES_USER", PostgresSettings.user),
            password=env.get("POSTGRES_PASSWORD") or None,
            reader_user=env.get("POSTGRES_READER_USER", PostgresSettings.reader_user),
            reader_password=env.get("POSTGRES_READER_PASSWORD") or None,
            admin_password=env.get("POSTGRES_ADMIN_PASSWORD") or None,
            bin_dir=Path(env["PG_BIN_DIR"]) if env.get("PG_BIN_DIR") else None,
        )
        spark = SparkSettings(
            master=env.get("SPARK_MASTER", SparkSettings.master),
            driver_memory=env.get("SPARK_DRIVER_MEMORY", SparkSettings.driver_memory),
            shuffle_partitions=_int(env, "SPARK_SHUFFLE_PARTITIONS", SparkSettings.shuffle_partitions),
            ui_enabled=_bool(env, "SPARK_UI_ENABLED", SparkSettings.ui_enabled),
            jars_dir=Path(env.get("SPARK_JARS_DIR") or stack_dir / "jars" / "spark"),
            workers=_int(env, "SPARK_WORKERS", SparkSettings.workers),
            worker_cores=_int(env, "SPARK_WORKER_CORES", SparkSettings.worker_cores),
            worker_memory=env.get("SPARK_WORKER_MEMORY", SparkSettings.worker_memory),
            master_webui_port=_int(env, "SPARK_MASTER_WEBUI_PORT", SparkSettings.master_webui_port),
            executor_memory=env.get("SPARK_EXECUTOR_MEMORY", SparkSettings.executor_memory),
            codegen=_bool(env, "SPARK_CODEGEN", SparkSettings.codegen),
        )
        root = env.get("LAKEHOUSE_ROOT", cls.lakehouse_root)
        if not root or root.startswith("s3a://") and not urlparse(root).netloc:
            raise SettingsError(f"LAKEHOUSE_ROOT must be s3a://bucket/prefix or a path, got {root!r}")
        ingest_url = env.get("INGEST_URL") or DEFAULT_INGEST_URL
        if not ingest_url.startswith(("ws://", "wss://", "http://", "https://")):
            raise SettingsError(f"INGEST_URL must start with ws://, wss://, http:// or https://, got {ingest_url!r}")
        return cls(
            lakehouse_root=root, kafka=kafka, s3=s3, postgres=postgres, spark=spark, stack_dir=stack_dir,
            ingest_url=ingest_url, log_level=log_level(env),
            app_warm_up=_bool(env, "MEETUP_APP_WARM_UP", cls.app_warm_up),
            app_login=_bool(env, "MEETUP_APP_LOGIN", cls.app_login),
        )  # fmt: skip

    def to_env(self) -> dict[str, str]:
        """The variables that give these settings back (`Settings.from_env(s.to_env()) == s`): what a child
        process needs to see what this one sees. Unset secrets stay unset."""
        k, s3, pg, sp = self.kafka, self.s3, self.postgres, self.spark
        env = {
            "LAKEHOUSE_ROOT": self.lakehouse_root,
            "MEETUP_STACK_DIR": str(self.stack_dir),
            "KAFKA_BOOTSTRAP_SERVERS": k.bootstrap_servers,
            "KAFKA_TOPIC_PREFIX": k.topic_prefix,
            "KAFKA_TOPIC_PARTITIONS": str(k.partitions),
            "KAFKA_REPLICATION_FACTOR": str(k.replication_factor),
            "KAFKA_RETENTION_MS": str(k.retention_ms),
            "KAFKA_CONTROLLER_PORT": str(k.controller_port),
            **{"KAFKA_CLIENT_" + key.upper().replace(".", "_"): value for key, value in k.client_config.items()},
            **{"KAFKA_JAVA_CLIENT_" + key.upper().replace(".", "_"): v for key, v in k.java_client_config.items()},
            "S3_ENDPOINT": s3.endpoint,
            "AWS_REGION": s3.region,
            "S3_PATH_STYLE": str(s3.path_style).lower(),
            "AWS_ACCESS_KEY_ID": s3.access_key_id,
            "AWS_SECRET_ACCESS_KEY": s3.secret_access_key,
            "AWS_SESSION_TOKEN": s3.session_token,
            "POSTGRES_HOST": pg.host,
            "POSTGRES_PORT": str(pg.port),
            "POSTGRES_DB": pg.database,
            "POSTGRES_SCHEMA": pg.schema,
            "POSTGRES_USER": pg.user,
            "POSTGRES_PASSWORD": pg.password,
            "POSTGRES_READER_USER": pg.reader_user,
            "POSTGRES_READER_PASSWORD": pg.reader_password,
            "POSTGRES_ADMIN_PASSWORD": pg.admin_password,
            "PG_BIN_DIR": str(pg.bin_dir) if pg.bin_dir else None,
            "SPARK_MASTER": sp.master,
            "SPARK_DRIVER_MEMORY": sp.driver_memory,
            "SPARK_SHUFFLE_PARTITIONS": str(sp.shuffle_partitions),
            "SPARK_UI_ENABLED": str(sp.ui_enabled).lower(),
            "SPARK_JARS_DIR": str(sp.jars_dir),
            "SPARK_WORKERS": str(sp.workers),
            "SPARK_WORKER_CORES": str(sp.worker_cores),
            "SPARK_WORKER_MEMORY": sp.worker_memory,
            "SPARK_MASTER_WEBUI_PORT": str(sp.master_webui_port),
            "SPARK_EXECUTOR_MEMORY": sp.executor_memory,
            "SPARK_CODEGEN": str(sp.codegen).lower(),
            "INGEST_URL": self.ingest_url,
            "MEETUP_LOG_LEVEL": self.log_level,
            "MEETUP_APP_WARM_UP": str(self.app_warm_up).lower(),
            "MEETUP_APP_LOGIN": str(self.app_login).lower(),
        }
        return {key: value for key, value in env.items() if value is not None}

    def child_env(self, base: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
        """The environment of a child process of ours (the chain, the app, the producer, spark-submit, a
        Spark worker): the system's variables (PATH, HOME, JAVA_HOME...) from `base` (default: this
        process's), with every project variable replaced by these settings', then `extra` on top. A project
        variable set in `base` but not by these settings (a secret left to the provider chain) is dropped,
        so the child cannot see anything these settings do not say."""
        base = os.environ if base is None else base
        ours = self.to_env()
        kept = {key: value for key, value in base.items() if not _is_project_variable(key)}
        return {**kept, **ours, **extra}


# Variables this module reads; `child_env` replaces them rather than passing them through.
PROJECT_VARIABLES = frozenset(
    {
        "LAKEHOUSE_ROOT", "MEETUP_STACK_DIR", "INGEST_URL", "MEETUP_LOG_LEVEL", "MEETUP_APP_WARM_UP",
        "MEETUP_APP_LOGIN", "S3_ENDPOINT", "AWS_REGION", "S3_PATH_STYLE", "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "PG_BIN_DIR",
    }
)  # fmt: skip
PROJECT_PREFIXES = ("KAFKA_", "POSTGRES_", "SPARK_")


def _is_project_variable(name: str) -> bool:
    # SPARK_HOME, SPARK_LOCAL_IP and the like belong to Spark's scripts, not to these settings.
    if name in ("SPARK_HOME", "SPARK_LOCAL_IP", "SPARK_NO_DAEMONIZE", "SPARK_CONF_DIR"):
        return False
    return name in PROJECT_VARIABLES or name.startswith(PROJECT_PREFIXES)


def find_stack_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The local stack's folder: MEETUP_STACK_DIR, else `.stack/` in the project. The one place it is worked out."""
    environ = os.environ if environ is None else environ
    return Path(environ.get("MEETUP_STACK_DIR") or DEFAULT_STACK_DIR)


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a KEY=VALUE file (blank lines and # comments ignored)."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip()
    return values


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def log_level(environ: Mapping[str, str] | None = None) -> str:
    """MEETUP_LOG_LEVEL (default INFO): how much every command logs."""
    environ = os.environ if environ is None else environ
    raw = environ.get("MEETUP_LOG_LEVEL") or "INFO"
    if raw.upper() not in LOG_LEVELS:
        raise SettingsError(f"MEETUP_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {raw!r}")
    return raw.upper()


def merged_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment over the local stack's `.stack/env` (an exported variable wins), as a new mapping."""
    environ = os.environ if environ is None else environ
    stack_env = find_stack_dir(environ) / "env"
    values = read_env_file(stack_env) if stack_env.is_file() else {}
    return {**values, **environ}


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings for an entry point: the environment, over the local stack's generated `.stack/env`.
    Neither is changed: the settings carry the credentials to whatever needs them."""
    return Settings.from_env(merged_env(environ))
