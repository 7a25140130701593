from __future__ import annotations

import pytest

from common.settings import Settings
from stack import jars, kafka


@pytest.mark.parametrize(
    ("file_name", "artifact"),
    [
        ("hadoop-aws-3.4.2.jar", "hadoop-aws"),
        ("zstd-jni-1.5.7-3.jar", "zstd-jni"),
        ("delta-spark_2.13-4.3.1.jar", "delta-spark_2.13"),
        ("wildfly-openssl-2.1.4.Final.jar", "wildfly-openssl"),
        ("netty-codec-http2-4.1.115.Final.jar", "netty-codec-http2"),
        ("jackson-annotations-2.22.jar", "jackson-annotations"),
    ],
)
def test_artifact_name_strips_the_version(file_name, artifact):
    assert jars.artifact_name(file_name) == artifact


def test_jars_pyspark_already_ships_are_dropped(tmp_path):
    ours, theirs = tmp_path / "ours", tmp_path / "pyspark"
    ours.mkdir()
    theirs.mkdir()
    for name in ("delta-spark_2.13-4.3.1.jar", "jackson-core-2.13.5.jar", "hadoop-client-api-3.4.2.jar"):
        (ours / name).touch()
    for name in ("jackson-core-2.20.0.jar", "hadoop-client-api-3.4.2.jar", "spark-core_2.13-4.1.1.jar"):
        (theirs / name).touch()

    removed = jars.drop_provided_by_pyspark(ours, theirs)

    assert removed == ["hadoop-client-api-3.4.2.jar", "jackson-core-2.13.5.jar"]
    assert [jar.name for jar in ours.iterdir()] == ["delta-spark_2.13-4.3.1.jar"]


def _properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line)


def test_single_broker_config_is_kraft_with_replication_one():
    settings = Settings()
    (node,) = kafka.nodes(settings)
    config = _properties(kafka.server_properties(settings, node, [node]))
    assert config["process.roles"] == "broker,controller"
    assert config["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert config["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert config["offsets.topic.replication.factor"] == "1"
    assert config["min.insync.replicas"] == "1"
    assert config["log.dirs"] == str(settings.stack_dir / "kafka" / "data")


def test_three_listed_brokers_make_a_three_voter_quorum_with_replication_three_and_two_in_sync():
    settings = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096"})
    cluster = kafka.nodes(settings)
    assert [(node.node_id, node.port, node.controller_port) for node in cluster] == [
        (1, 9092, 9093),
        (2, 9094, 9095),
        (3, 9096, 9097),
    ]
    assert len({node.data_dir for node in cluster}) == 3
    config = _properties(kafka.server_properties(settings, cluster[1], cluster))
    assert config["node.id"] == "2"
    assert config["controller.quorum.voters"] == "1@127.0.0.1:9093,2@127.0.0.1:9095,3@127.0.0.1:9097"
    assert config["listeners"] == "PLAINTEXT://127.0.0.1:9094,CONTROLLER://127.0.0.1:9095"
    assert config["default.replication.factor"] == "3"
    assert config["offsets.topic.replication.factor"] == "3"
    assert config["min.insync.replicas"] == "2"
    assert config["unclean.leader.election.enable"] == "false"


def test_an_explicit_replication_factor_wins_over_the_broker_count():
    settings = Settings.from_env(
        {"KAFKA_BOOTSTRAP_SERVERS": "10.0.0.1:9092,10.0.0.2:9092", "KAFKA_REPLICATION_FACTOR": "3"}
    )
    assert settings.kafka.replication_factor == 3
    assert settings.kafka.min_insync_replicas == 2
    assert Settings.from_env({}).kafka.replication_factor == 1


def test_a_cluster_id_never_starts_with_a_dash_the_format_tool_would_read_as_an_option():
    ids = [kafka._cluster_id() for _ in range(2000)]  # about 31 of 2000 raw ids start with "-"
    assert all(not cluster_id.startswith("-") and len(cluster_id) == 22 for cluster_id in ids)
