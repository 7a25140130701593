from __future__ import annotations

from pathlib import Path

import pytest

from common.settings import PROJECT_ROOT, Settings, SettingsError, load_settings


def test_defaults_point_at_the_local_stack_and_carry_no_secret():
    settings = Settings.from_env({})
    assert settings.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert settings.kafka.topic("rsvps") == "meetup.rsvps"
    assert (settings.kafka.partitions, settings.kafka.retention_ms) == (3, 7 * 24 * 3600 * 1000)
    assert settings.lakehouse_root == "s3a://meetup-lakehouse/lake"
    assert settings.bucket == "meetup-lakehouse"
    assert settings.postgres.password is None and settings.postgres.reader_password is None
    assert settings.spark.jars_dir == PROJECT_ROOT / ".stack" / "jars" / "spark"


def test_environment_overrides_every_group():
    settings = Settings.from_env(
        {
            "KAFKA_BOOTSTRAP_SERVERS": "b1:19092,b2:19092",
            "KAFKA_TOPIC_PARTITIONS": "6",
            "KAFKA_CLIENT_SECURITY_PROTOCOL": "SASL_SSL",
            "LAKEHOUSE_ROOT": "/tmp/lake",
            "S3_ENDPOINT": "https://s3.example.test",
            "POSTGRES_PORT": "6543",
            "POSTGRES_PASSWORD": "pw",
            "SPARK_MASTER": "spark://m:7077",
            "MEETUP_STACK_DIR": "/var/meetup",
        }
    )
    assert settings.kafka.partitions == 6
    assert settings.kafka.client_config == {"security.protocol": "SASL_SSL"}
    assert settings.bucket is None and settings.path("bronze", "rsvps") == "/tmp/lake/bronze/rsvps"
    assert settings.s3.secure
    assert settings.postgres.port == 6543 and settings.postgres.password_for() == "pw"
    assert "pw" not in settings.postgres.dsn() and "pw" not in settings.postgres.jdbc_url
    assert settings.spark.master == "spark://m:7077"
    assert settings.spark.jars_dir == Path("/var/meetup/jars/spark")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KAFKA_TOPIC_PARTITIONS", "three"),
        ("KAFKA_BOOTSTRAP_SERVERS", "localhost"),
        ("S3_ENDPOINT", "127.0.0.1:9000"),
        ("S3_PATH_STYLE", "maybe"),
        ("LAKEHOUSE_ROOT", "s3a:///no-bucket"),
    ],
)
def test_a_malformed_setting_is_named_in_the_error(name, value):
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_missing_password_says_which_variable():
    with pytest.raises(SettingsError, match="POSTGRES_READER_PASSWORD"):
        Settings.from_env({}).postgres.password_for(reader=True)


def test_stack_env_file_fills_gaps_but_never_overrides_the_environment(tmp_path):
    (tmp_path / "env").write_text("# generated\nPOSTGRES_PASSWORD=from-file\nAWS_ACCESS_KEY_ID=file-key\n\n")
    environ = {"MEETUP_STACK_DIR": str(tmp_path), "AWS_ACCESS_KEY_ID": "exported-key"}
    settings = load_settings(environ)
    assert settings.postgres.password == "from-file"
    assert environ["AWS_ACCESS_KEY_ID"] == "exported-key"
    assert environ["POSTGRES_PASSWORD"] == "from-file"


def test_one_set_of_kafka_security_variables_configures_librdkafka_and_sparks_java_client():
    settings = Settings.from_env(
        {
            "KAFKA_CLIENT_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_CLIENT_SASL_MECHANISMS": "SCRAM-SHA-512",
            "KAFKA_CLIENT_SASL_USERNAME": "meetup",
            "KAFKA_CLIENT_SASL_PASSWORD": 'p"w\\1',
            "KAFKA_CLIENT_SSL_CA_LOCATION": "/etc/kafka/ca.pem",
            "KAFKA_JAVA_CLIENT_CLIENT_DNS_LOOKUP": "use_all_dns_ips",
        }
    )
    assert settings.kafka.client_config == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": "meetup",
        "sasl.password": 'p"w\\1',
        "ssl.ca.location": "/etc/kafka/ca.pem",
    }
    assert settings.kafka.java_config() == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.jaas.config": 'org.apache.kafka.common.security.scram.ScramLoginModule required username="meetup" '
        'password="p\\"w\\\\1";',
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": "/etc/kafka/ca.pem",
        "client.dns.lookup": "use_all_dns_ips",
    }


def test_sparks_kafka_source_gets_the_translated_security_options():
    from pipelines.bronze.job import kafka_source_options

    settings = Settings.from_env(
        {
            "KAFKA_CLIENT_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "KAFKA_CLIENT_SASL_MECHANISM": "PLAIN",
            "KAFKA_CLIENT_SASL_USERNAME": "u",
            "KAFKA_CLIENT_SASL_PASSWORD": "p",
        }
    )
    options = kafka_source_options(settings, "meetup.rsvps")
    assert options["kafka.security.protocol"] == "SASL_PLAINTEXT"
    assert options["kafka.sasl.mechanism"] == "PLAIN"
    assert options["kafka.sasl.jaas.config"].startswith("org.apache.kafka.common.security.plain.PlainLoginModule")
    assert "kafka.sasl.username" not in options and "kafka.sasl.password" not in options


def test_a_sasl_mechanism_without_a_java_translation_is_refused_at_start_naming_the_way_out():
    with pytest.raises(SettingsError, match="KAFKA_JAVA_CLIENT_SASL_JAAS_CONFIG"):
        Settings.from_env(
            {
                "KAFKA_CLIENT_SASL_MECHANISMS": "GSSAPI",
                "KAFKA_CLIENT_SASL_USERNAME": "u",
                "KAFKA_CLIENT_SASL_PASSWORD": "p",
            }
        )


def test_the_postgres_mirror_rides_the_hot_path_when_gold_runs_and_silver_otherwise():
    from pipelines.chain import mirror_stage

    assert mirror_stage(("bronze", "silver", "gold", "score"), ("rsvps",)) == "gold"
    assert mirror_stage(("bronze", "silver"), ("rsvps", "photos")) == "silver"
    assert mirror_stage(("bronze", "score"), ("rsvps",)) is None
    assert mirror_stage(("bronze", "silver", "gold"), ("photos",)) is None, "only RSVPs have a mirror"
    assert mirror_stage(("bronze", "silver", "gold"), ("rsvps",), mirror_to_postgres=False) is None


def test_code_generation_is_off_unless_asked_for_and_the_chain_schedules_fairly():
    import xml.etree.ElementTree as ET

    from common.spark import POOL_WEIGHTS, lakehouse_conf

    off = lakehouse_conf(Settings.from_env({}))
    assert off["spark.sql.codegen.wholeStage"] == "false" and off["spark.sql.codegen.factoryMode"] == "NO_CODEGEN"
    on = lakehouse_conf(Settings.from_env({"SPARK_CODEGEN": "true"}))
    assert "spark.sql.codegen.wholeStage" not in on and "spark.sql.codegen.factoryMode" not in on
    assert off["spark.scheduler.mode"] == "FAIR"
    pools = ET.parse(off["spark.scheduler.allocation.file"]).getroot().findall("pool")
    assert {pool.get("name"): int(pool.findtext("weight")) for pool in pools} == POOL_WEIGHTS
