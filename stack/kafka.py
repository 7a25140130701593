"""Apache Kafka in KRaft mode, run from the Maven Central jars in `.stack/jars/kafka`."""

from __future__ import annotations

import base64
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

from common import health
from common.settings import STREAMS, Settings, host_port
from stack import procs

NAME = "kafka"
HEAP = "-Xmx512m"


def _dir(settings: Settings) -> Path:
    return settings.stack_dir / "kafka"


@dataclass(frozen=True)
class Node:
    """One KRaft node of the local stack: broker and controller in one JVM."""

    node_id: int
    host: str
    port: int  # the broker's listener, one of KAFKA_BOOTSTRAP_SERVERS
    controller_port: int
    base: Path  # its pid file, log, config and data live here

    @property
    def pid_file(self) -> Path:
        return self.base / "kafka.pid"

    @property
    def log_file(self) -> Path:
        return self.base / "kafka.log"

    @property
    def data_dir(self) -> Path:
        return self.base / "data"


def nodes(settings: Settings) -> list[Node]:
    """One node per address in KAFKA_BOOTSTRAP_SERVERS: `127.0.0.1:9092` is a single broker (state in
    `.stack/kafka`), `127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096` a three-broker cluster (state in
    `.stack/kafka/node-N`). Node N's controller listens at KAFKA_CONTROLLER_PORT plus the distance of its
    broker port from the first one: 9093, 9095, 9097."""
    addresses = [host_port(address, "KAFKA_BOOTSTRAP_SERVERS") for address in settings.kafka.addresses]
    first_port, controller_port = addresses[0][1], settings.kafka.controller_port
    if len(addresses) == 1:
        host, port = addresses[0]
        return [Node(1, host, port, controller_port, _dir(settings))]
    return [
        Node(i, host, port, controller_port + port - first_port, _dir(settings) / f"node-{i}")
        for i, (host, port) in enumerate(addresses, start=1)
    ]


def server_properties(settings: Settings, node: Node, voters: list[Node]) -> str:
    """Broker+controller config for one node of a KRaft quorum of `voters`."""
    replication = settings.kafka.replication_factor
    min_insync = settings.kafka.min_insync_replicas
    quorum = ",".join(f"{voter.node_id}@{voter.host}:{voter.controller_port}" for voter in voters)
    protocol = "SASL_PLAINTEXT" if sasl_plain_user(settings) else "PLAINTEXT"
    return "\n".join(
        [
            "process.roles=broker,controller",
            f"node.id={node.node_id}",
            f"controller.quorum.voters={quorum}",
            f"listeners={protocol}://{node.host}:{node.port},CONTROLLER://{node.host}:{node.controller_port}",
            f"advertised.listeners={protocol}://{node.host}:{node.port}",
            "controller.listener.names=CONTROLLER",
            f"inter.broker.listener.name={protocol}",
            f"listener.security.protocol.map={protocol}:{protocol},CONTROLLER:PLAINTEXT",
            *sasl_properties(settings),
            f"log.dirs={node.data_dir}",
            f"num.partitions={settings.kafka.partitions}",
            f"default.replication.factor={replication}",
            f"offsets.topic.replication.factor={replication}",
            f"transaction.state.log.replication.factor={replication}",
            f"transaction.state.log.min.isr={min_insync}",
            # With acks=all (the producer's), a write succeeds only once 2 replicas have it, and a replica
            # that missed writes never becomes leader: an acknowledged message survives losing a broker.
            f"min.insync.replicas={min_insync}",
            "unclean.leader.election.enable=false",
            f"log.retention.ms={settings.kafka.retention_ms}",
            # Check retention often, so a topic's retention.ms takes effect soon (tests of the retention gap).
            "log.retention.check.interval.ms=30000",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=false",
            "",
        ]
    )


def sasl_plain_user(settings: Settings) -> tuple[str, str] | None:
    """The (user, password) the clients are configured with, when they speak SASL/PLAIN without TLS.

    The local broker then requires exactly that login on its client listener, so the security settings a
    deployment would use (KAFKA_CLIENT_SECURITY_PROTOCOL and friends) can be exercised for real here.
    """
    config = settings.kafka.client_config
    mechanism = (config.get("sasl.mechanisms") or config.get("sasl.mechanism") or "PLAIN").upper()
    if config.get("security.protocol", "").upper() != "SASL_PLAINTEXT" or mechanism != "PLAIN":
        return None
    if "sasl.username" not in config or "sasl.password" not in config:
        return None
    return config["sasl.username"], config["sasl.password"]


def sasl_properties(settings: Settings) -> list[str]:
    login = sasl_plain_user(settings)
    if login is None:
        return []
    user, password = login
    # The brokers log in to each other as the same user; PlainLoginModule's user_<name> lists who may log in.
    jaas = (
        f'org.apache.kafka.common.security.plain.PlainLoginModule required username="{user}" '
        f'password="{password}" user_{user}="{password}";'
    )
    return [
        "sasl.enabled.mechanisms=PLAIN",
        "sasl.mechanism.inter.broker.protocol=PLAIN",
        f"listener.name.sasl_plaintext.plain.sasl.jaas.config={jaas}",
    ]


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
    """A random cluster id, as Kafka makes them: never starting with '-', which the format tool's argument
    parser would take for an option (one id in 64 did, and the storage format failed)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def healthy(settings: Settings) -> bool:
    """Every node's broker port answers and the cluster reports all of them."""
    expected = nodes(settings)
    if not all(procs.port_open(node.host, node.port) for node in expected):
        return False
    try:
        metadata = health.kafka_admin(settings).list_topics(timeout=3)
    except KafkaException:
        return False
    return len(metadata.brokers) >= len(expected)


def _java(settings: Settings, node: Node) -> list[str]:
    jars = settings.stack_dir / "jars" / "kafka"
    if not any(jars.glob("kafka_2.13-*.jar")):
        raise procs.StackError(f"kafka: no broker jars in {jars}; run `make jars`")
    return [procs.java(), HEAP, f"-Dlog4j2.configurationFile={node.base / 'log4j2.properties'}", "-cp", f"{jars}/*"]


def _cluster_id_for(settings: Settings, cluster: list[Node]) -> str:
    """A new id for a single node; one id shared by all nodes of a cluster, kept beside them."""
    if len(cluster) == 1:
        return _cluster_id()
    id_file = _dir(settings) / "cluster-id"
    if not id_file.exists():
        id_file.parent.mkdir(parents=True, exist_ok=True)
        id_file.write_text(_cluster_id())
    return id_file.read_text().strip()


def start_node(settings: Settings, node: Node, cluster: list[Node]) -> None:
    """Start one node unless it runs (formatting its storage on first start); does not wait."""
    if procs.read_pid(node.pid_file) is not None:
        return
    if len(cluster) > 1 and procs.read_pid(_dir(settings) / "kafka.pid") is not None:
        raise procs.StackError("kafka: the single broker of this stack is running; `make stack-down` first")
    if len(cluster) == 1 and any(procs.read_pid(pid) is not None for pid in _dir(settings).glob("node-*/kafka.pid")):
        raise procs.StackError("kafka: the three-broker cluster of this stack is running; `make stack-down` first")
    procs.ensure_port_free(node.host, node.port, service=NAME, setting="KAFKA_BOOTSTRAP_SERVERS")
    procs.ensure_port_free(node.host, node.controller_port, service=NAME, setting="KAFKA_CONTROLLER_PORT")
    node.base.mkdir(parents=True, exist_ok=True)
    config = node.base / "server.properties"
    config.write_text(server_properties(settings, node, cluster))
    config.chmod(0o600)  # with SASL it holds the password
    (node.base / "log4j2.properties").write_text(LOG4J2)
    java = _java(settings, node)
    if not (node.data_dir / "meta.properties").exists():
        # Storage is formatted exactly once; reformatting would orphan the existing logs.
        result = subprocess.run(
            [*java, "kafka.tools.StorageTool", "format", "-t", _cluster_id_for(settings, cluster), "-c", str(config)],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise procs.StackError(f"kafka: storage format failed: {result.stdout}{result.stderr}")
    procs.spawn([*java, "kafka.Kafka", str(config)], log_file=node.log_file, pid_file=node.pid_file)


def up(settings: Settings) -> str:
    cluster = nodes(settings)
    for node in cluster:  # all at once: a quorum of three needs two voters up before anyone is healthy
        start_node(settings, node, cluster)
    procs.wait_until(
        lambda: healthy(settings),
        what=NAME,
        timeout=90 + 30 * (len(cluster) - 1),
        log_file=cluster[0].log_file,
        alive=lambda: all(procs.read_pid(node.pid_file) is not None for node in cluster),
    )
    ensure_topics(settings)
    shape = (
        "KRaft"
        if len(cluster) == 1
        else f"KRaft, {len(cluster)} brokers, replication {settings.kafka.replication_factor}"
    )
    logs = cluster[0].log_file if len(cluster) == 1 else _dir(settings) / "node-*" / "kafka.log"
    return f"{NAME:<10} {settings.kafka.bootstrap_servers}  ({shape}, log {logs})"


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
                "min.insync.replicas": str(settings.kafka.min_insync_replicas),
                "unclean.leader.election.enable": "false",
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


def kill_node(settings: Settings, node_id: int) -> bool:
    """SIGKILL one node of the local cluster (what a crashed broker looks like); `up` starts it again."""
    node = next(node for node in nodes(settings) if node.node_id == node_id)
    return procs.kill(node.pid_file)


def _pid_files(settings: Settings) -> list[Path]:
    """Every node's pid file under `.stack/kafka`, whatever KAFKA_BOOTSTRAP_SERVERS says now."""
    base = _dir(settings)
    return [base / "kafka.pid", *sorted(base.glob("node-*/kafka.pid"))]


def down(settings: Settings) -> bool:
    # All nodes at once: stopped one by one, the last ones lose their quorum and hang in shutdown.
    with ThreadPoolExecutor(max_workers=4) as pool:
        stopped = list(pool.map(lambda pid_file: procs.terminate(pid_file, timeout=60), _pid_files(settings)))
    return any(stopped)


def status(settings: Settings) -> tuple[str, bool]:
    """A status line and whether the service is healthy."""
    cluster = nodes(settings)
    running = sum(procs.read_pid(node.pid_file) is not None for node in cluster)
    ok = healthy(settings)
    state = "healthy" if ok else ("running but not answering" if running else "stopped")
    if len(cluster) > 1:
        state += f", {running} of {len(cluster)} brokers running"
    return f"{NAME:<10} {settings.kafka.bootstrap_servers:<28} {state}", ok
