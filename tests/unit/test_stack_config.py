from __future__ import annotations

from dataclasses import replace

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


def test_single_broker_config_is_kraft_with_replication_one(tmp_path):
    config = _properties(kafka.server_properties(Settings(), node_id=1, controller_port=9093, data_dir=tmp_path))
    assert config["process.roles"] == "broker,controller"
    assert config["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert config["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert config["offsets.topic.replication.factor"] == "1"
    assert config["min.insync.replicas"] == "1"
    assert config["log.dirs"] == str(tmp_path)


def test_replicated_config_requires_two_in_sync_replicas(tmp_path):
    settings = Settings()
    settings = replace(settings, kafka=replace(settings.kafka, replication_factor=3))
    config = _properties(kafka.server_properties(settings, node_id=2, controller_port=9093, data_dir=tmp_path))
    assert config["default.replication.factor"] == "3"
    assert config["min.insync.replicas"] == "2"
    assert config["unclean.leader.election.enable"] == "false"
