"""Apache Kafka in KRaft mode, run from the Maven Central jars in `.stack/jars/kafka`."""

from __future__ import annotations

import base64
import subprocess
import uuid
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import NewTopic

from common import health
from common.settings import STREAMS, Settings, host_port
from stack import procs

NAME = "kafka"
HEAP = "-Xmx512m"


def _dir(settings: Settings) -> Path:
    return settings.stack_dir / "kafka"


def server_properties(settings: Settings, *, node_id: int, controller_port: int, data_dir: Path) -> str:
    """Broker+controller config for one node; the voter list is where more nodes would be added."""
    host, port = host_port(settings.kafka.bootstrap_servers, "KAFKA_BOOTSTRAP_SERVERS")
    replication = settings.kafka.replication_factor
    return "\n".join(
        [
            "process.roles=broker,controller",
            f"node.id={node_id}",
            f"controller.quorum.voters={node_id}@{host}:{controller_port}",
            f"listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
            f"advertised.listeners=PLAINTEXT://{host}:{port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"log.dirs={data_dir}",
            f"num.partitions={settings.kafka.partitions}",
            f"default.replication.factor={replication}",
            f"offsets.topic.replication.factor={replication}",
            f"transaction.state.log.replication.factor={replication}",
            f"transaction.state.log.min.isr={min(2, replication)}",
            f"min.insync.replicas={min(2, replication)}",
            "unclean.leader.election.enable=false",
            f"log.retention.ms={settings.kafka.retention_ms}",
            # Check retention often, so a topic's retention.ms takes effect soon (tests of the retention gap).
            "log.retention.check.interval.ms=30000",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=false",
            "",
        ]
    )


LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = out
logger.kafka.name = kafka
logger.kafka.level = WARN
logger.org.name = org.apache.kafka
logger.org.level = WARN
"""


def _cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def healthy(settings: Settings) -> bool:
    host, port = host_port(settings.kafka.bootstrap_servers, "KAFKA_BOOTSTRAP_SERVERS")
    if not procs.port_open(host, port):
        return False
    try:
        health.check_kafka(settings, timeout=3)
    except health.ServiceUnavailable:
        return False
    return True


def up(settings: Settings, *, controller_port: int) -> str:
    base = _dir(settings)
    pid_file, log_file, data_dir = base / "kafka.pid", base / "kafka.log", base / "data"
    host, port = host_port(settings.kafka.bootstrap_servers, "KAFKA_BOOTSTRAP_SERVERS")
    if procs.read_pid(pid_file) is None:
        procs.ensure_port_free(host, port, service=NAME, setting="KAFKA_BOOTSTRAP_SERVERS")
        procs.ensure_port_free(host, controller_port, service=NAME, setting="KAFKA_CONTROLLER_PORT")
        base.mkdir(parents=True, exist_ok=True)
        config = base / "server.properties"
        config.write_text(server_properties(settings, node_id=1, controller_port=controller_port, data_dir=data_dir))
        (base / "log4j2.properties").write_text(LOG4J2)
        jars = settings.stack_dir / "jars" / "kafka"
        if not any(jars.glob("kafka_2.13-*.jar")):
            raise procs.StackError(f"kafka: no broker jars in {jars}; run `make jars`")
        java = [
            procs.java(),
            HEAP,
            f"-Dlog4j2.configurationFile={base / 'log4j2.properties'}",
            "-cp",
            f"{jars}/*",
        ]
        if not (data_dir / "meta.properties").exists():
            # Storage is formatted exactly once; reformatting would orphan the existing logs.
            result = subprocess.run(
                [*java, "kafka.tools.StorageTool", "format", "-t", _cluster_id(), "-c", str(config)],
                capture_output=True,
                text=True,
            )
            if result.returncode != 0:
                raise procs.StackError(f"kafka: storage format failed: {result.stdout}{result.stderr}")
        procs.spawn([*java, "kafka.Kafka", str(config)], log_file=log_file, pid_file=pid_file)
    procs.wait_until(
        lambda: healthy(settings),
        what=NAME,
        timeout=90,
        log_file=log_file,
        alive=lambda: procs.read_pid(pid_file) is not None,
    )
    ensure_topics(settings)
    return f"{NAME:<10} {settings.kafka.bootstrap_servers}  (KRaft, log {log_file})"


def ensure_topics(settings: Settings, streams: tuple[str, ...] = STREAMS) -> list[str]:
    """Create the stream topics that do not exist yet; returns the names created."""
    admin = health.kafka_admin(settings)
    existing = set(admin.list_topics(timeout=10).topics)
    wanted = [
        NewTopic(
            settings.kafka.topic(stream),
            num_partitions=settings.kafka.partitions,
            replication_factor=settings.kafka.replication_factor,
            config={
                "retention.ms": str(settings.kafka.retention_ms),
                "compression.type": "producer",
                # Room for oversized frames up to the producer's limit (ingest.producer.MAX_FRAME_BYTES).
                "max.message.bytes": str(10 * 1024 * 1024),
            },
        )
        for stream in streams
        if settings.kafka.topic(stream) not in existing
    ]
    if not wanted:
        return []
    for topic, future in admin.create_topics(wanted, request_timeout=15).items():
        try:
            future.result()
        except KafkaException as error:
            if error.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise procs.StackError(f"kafka: could not create topic {topic}: {error}") from None
    return [topic.topic for topic in wanted]


def down(settings: Settings) -> bool:
    return procs.terminate(_dir(settings) / "kafka.pid", timeout=60)


def status(settings: Settings) -> tuple[str, bool]:
    """A status line and whether the service is healthy."""
    running = procs.read_pid(_dir(settings) / "kafka.pid") is not None
    ok = healthy(settings)
    state = "healthy" if ok else ("running but not answering" if running else "stopped")
    return f"{NAME:<10} {settings.kafka.bootstrap_servers:<28} {state}", ok
