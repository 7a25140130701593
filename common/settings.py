"""The one settings object: built once at an entry point from environment variables, then passed down.

Every value has a local default that matches the stack `make stack-up` starts. Secrets (S3 keys,
database passwords) never have a default in code: the local stack generates them on its first start
and writes them to `.stack/env`, which `load_settings()` reads *under* the real environment, so an
exported variable always wins and a deployment simply sets the variables itself.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

PROJECT_ROOT = Path(__file__).resolve().parent.parent

STREAMS = ("rsvps", "event_comments", "photos")


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
    password: str | None = None
    reader_user: str = "meetup_reader"
    reader_password: str | None = None

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
    stack_dir: Path = PROJECT_ROOT / ".stack"

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
        stack_dir = Path(env.get("MEETUP_STACK_DIR") or PROJECT_ROOT / ".stack")
        bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS", KafkaSettings.bootstrap_servers)
        kafka = KafkaSettings(
            bootstrap_servers=bootstrap,
            topic_prefix=env.get("KAFKA_TOPIC_PREFIX", KafkaSettings.topic_prefix),
            partitions=_int(env, "KAFKA_TOPIC_PARTITIONS", KafkaSettings.partitions),
            # One replica per listed broker, up to 3, unless set: the local three-broker cluster gets 3.
            replication_factor=_int(env, "KAFKA_REPLICATION_FACTOR", min(3, len(bootstrap.split(",")))),
            retention_ms=_int(env, "KAFKA_RETENTION_MS", KafkaSettings.retention_ms),
            client_config=_prefixed(env, "KAFKA_CLIENT_"),
            java_client_config=_prefixed(env, "KAFKA_JAVA_CLIENT_"),
        )
        host_port(kafka.bootstrap_servers, "KAFKA_BOOTSTRAP_SERVERS")
        kafka.java_config()  # a SASL setting Spark cannot use fails here, at start, naming the variables
        s3 = S3Settings(
            endpoint=env.get("S3_ENDPOINT", S3Settings.endpoint),
            region=env.get("AWS_REGION", S3Settings.region),
            path_style=_bool(env, "S3_PATH_STYLE", S3Settings.path_style),
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
        return cls(lakehouse_root=root, kafka=kafka, s3=s3, postgres=postgres, spark=spark, stack_dir=stack_dir)


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


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Settings for an entry point: the environment, over the local stack's generated `.stack/env`.

    The stack's values are also exported into the environment (without overriding anything), so that
    boto3, libpq and the Spark JVM's default AWS credential chain find the same credentials.
    """
    environ = os.environ if environ is None else environ
    stack_env = Path(environ.get("MEETUP_STACK_DIR") or PROJECT_ROOT / ".stack") / "env"
    if stack_env.is_file():
        for key, value in read_env_file(stack_env).items():
            environ.setdefault(key, value)
    return Settings.from_env(environ)
