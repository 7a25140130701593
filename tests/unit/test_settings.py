from __future__ import annotations

import os
from pathlib import Path

import pytest

from common.settings import PROJECT_ROOT, Settings, SettingsError, find_stack_dir, load_settings


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


def test_stack_env_file_fills_gaps_but_never_overrides_the_environment_and_nothing_is_written_back(tmp_path):
    (tmp_path / "env").write_text("# generated\nPOSTGRES_PASSWORD=from-file\nAWS_ACCESS_KEY_ID=file-key\n\n")
    environ = {"MEETUP_STACK_DIR": str(tmp_path), "AWS_ACCESS_KEY_ID": "exported-key"}
    settings = load_settings(environ)
    assert settings.postgres.password == "from-file"
    assert settings.s3.access_key_id == "exported-key"
    assert environ == {"MEETUP_STACK_DIR": str(tmp_path), "AWS_ACCESS_KEY_ID": "exported-key"}, "environ untouched"


def test_loading_the_settings_leaves_this_process_environment_alone(tmp_path, monkeypatch):
    (tmp_path / "env").write_text("AWS_SECRET_ACCESS_KEY=s3cret\nPOSTGRES_ADMIN_PASSWORD=admin\n")
    monkeypatch.setenv("MEETUP_STACK_DIR", str(tmp_path))
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    monkeypatch.delenv("POSTGRES_ADMIN_PASSWORD", raising=False)
    settings = load_settings()
    assert settings.s3.secret_access_key == "s3cret" and settings.postgres.admin_password == "admin"
    assert "AWS_SECRET_ACCESS_KEY" not in os.environ and "POSTGRES_ADMIN_PASSWORD" not in os.environ


def test_every_variable_the_project_reads_is_a_setting_and_survives_the_trip_to_a_child():
    env = {
        "LAKEHOUSE_ROOT": "s3a://lake-bucket/x", "MEETUP_STACK_DIR": "/srv/stack", "KAFKA_BOOTSTRAP_SERVERS": "k:1",
        "KAFKA_TOPIC_PREFIX": "p", "KAFKA_TOPIC_PARTITIONS": "5", "KAFKA_REPLICATION_FACTOR": "1",
        "KAFKA_RETENTION_MS": "60000", "KAFKA_CONTROLLER_PORT": "19093", "KAFKA_CLIENT_SECURITY_PROTOCOL": "SSL",
        "KAFKA_JAVA_CLIENT_CLIENT_DNS_LOOKUP": "use_all_dns_ips", "S3_ENDPOINT": "https://s3.test",
        "AWS_REGION": "eu-west-3", "S3_PATH_STYLE": "false", "AWS_ACCESS_KEY_ID": "ak",
        "AWS_SECRET_ACCESS_KEY": "s3cret-key", "AWS_SESSION_TOKEN": "tok", "POSTGRES_HOST": "db",
        "POSTGRES_PORT": "6000", "POSTGRES_DB": "d",
        "POSTGRES_SCHEMA": "s", "POSTGRES_USER": "w", "POSTGRES_PASSWORD": "writer-pw", "POSTGRES_READER_USER": "r",
        "POSTGRES_READER_PASSWORD": "reader-pw", "POSTGRES_ADMIN_PASSWORD": "admin-pw", "PG_BIN_DIR": "/opt/pg/bin",
        "SPARK_MASTER": "spark://m:7077", "SPARK_DRIVER_MEMORY": "2g", "SPARK_SHUFFLE_PARTITIONS": "8",
        "SPARK_UI_ENABLED": "false", "SPARK_JARS_DIR": "/opt/jars", "SPARK_WORKERS": "3", "SPARK_WORKER_CORES": "2",
        "SPARK_WORKER_MEMORY": "3g", "SPARK_MASTER_WEBUI_PORT": "18080", "SPARK_EXECUTOR_MEMORY": "2g",
        "SPARK_CODEGEN": "true", "INGEST_URL": "http://stream.test:80", "MEETUP_LOG_LEVEL": "DEBUG",
        "MEETUP_APP_WARM_UP": "false", "MEETUP_APP_LOGIN": "true",
    }  # fmt: skip
    settings = Settings.from_env(env)
    assert settings.to_env() == env, "every variable is read into a field, and written back the same"
    assert Settings.from_env(settings.to_env()) == settings
    assert settings.kafka.controller_port == 19093 and settings.postgres.bin_dir == Path("/opt/pg/bin")
    assert settings.ingest_url == "http://stream.test:80" and settings.app_login and not settings.app_warm_up
    assert not any(secret in repr(settings) for secret in ("s3cret-key", "writer-pw", "reader-pw", "admin-pw"))


def test_a_child_gets_the_settings_and_the_system_variables_and_no_stray_project_variable():
    settings = Settings.from_env({"KAFKA_TOPIC_PREFIX": "mine", "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"})
    base = {"PATH": "/usr/bin", "HOME": "/root", "SPARK_HOME": "/opt/spark", "KAFKA_TOPIC_PREFIX": "theirs",
            "KAFKA_CLIENT_SASL_PASSWORD": "stray", "POSTGRES_PASSWORD": "stray"}  # fmt: skip
    env = settings.child_env(base, SPARK_LOCAL_IP="127.0.0.1")
    assert env["PATH"] == "/usr/bin" and env["HOME"] == "/root" and env["SPARK_HOME"] == "/opt/spark"
    assert env["KAFKA_TOPIC_PREFIX"] == "mine" and env["SPARK_LOCAL_IP"] == "127.0.0.1"
    assert "KAFKA_CLIENT_SASL_PASSWORD" not in env and "POSTGRES_PASSWORD" not in env, "only what the settings say"
    assert Settings.from_env(env) == settings


def test_the_stack_folder_is_found_in_one_place(tmp_path):
    assert find_stack_dir({}) == PROJECT_ROOT / ".stack"
    assert find_stack_dir({"MEETUP_STACK_DIR": str(tmp_path)}) == tmp_path
    settings = Settings.from_env({"MEETUP_STACK_DIR": str(tmp_path)})
    assert settings.stack_dir == tmp_path and settings.spark.jars_dir == tmp_path / "jars" / "spark"


def test_s3_keys_reach_s3a_boto3_and_delta_rs_from_the_settings_and_only_when_given():
    import boto3

    from app.reader import Lakehouse
    from common.health import s3_client
    from common.spark import lakehouse_conf

    keyed = Settings.from_env({"AWS_ACCESS_KEY_ID": "ak", "AWS_SECRET_ACCESS_KEY": "sk"})
    conf = lakehouse_conf(keyed)
    assert (conf["spark.hadoop.fs.s3a.access.key"], conf["spark.hadoop.fs.s3a.secret.key"]) == ("ak", "sk")
    assert "spark.hadoop.fs.s3a.aws.credentials.provider" not in conf
    frozen = s3_client(keyed)._request_signer._credentials.get_frozen_credentials()
    assert (frozen.access_key, frozen.secret_key) == ("ak", "sk")
    options = Lakehouse(keyed).options
    assert (options["AWS_ACCESS_KEY_ID"], options["AWS_SECRET_ACCESS_KEY"]) == ("ak", "sk")
    temporary = lakehouse_conf(Settings.from_env({"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "s",
                                                  "AWS_SESSION_TOKEN": "t"}))  # fmt: skip
    assert temporary["spark.hadoop.fs.s3a.session.token"] == "t"
    assert temporary["spark.hadoop.fs.s3a.aws.credentials.provider"].endswith("TemporaryAWSCredentialsProvider")
    chain = lakehouse_conf(Settings.from_env({}))
    assert not any(key.startswith("spark.hadoop.fs.s3a.") and "key" in key for key in chain), "the provider chain"
    assert boto3  # the provider chain's session is boto3's default one


@pytest.mark.parametrize(
    ("name", "value"),
    [("INGEST_URL", "stream.test:8765"), ("MEETUP_APP_WARM_UP", "sometimes"), ("KAFKA_CONTROLLER_PORT", "x"),
     ("MEETUP_LOG_LEVEL", "LOUD")],
)  # fmt: skip
def test_the_new_settings_name_themselves_when_malformed(name, value):
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


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
    from pipelines.stages import ChainOptions, query_names

    def mirror_in(stages, streams, **options):
        return ChainOptions(stages=stages, streams=streams, **options).mirror_in

    assert mirror_in(("bronze", "silver", "gold", "score"), ("rsvps",)) == "gold"
    assert mirror_in(("bronze", "silver"), ("rsvps", "photos")) == "silver"
    assert mirror_in(("bronze", "score"), ("rsvps",)) is None
    assert mirror_in(("bronze", "silver", "gold"), ("photos",)) is None, "only RSVPs have a mirror"
    assert mirror_in(("bronze", "silver", "gold"), ("rsvps",), mirror_to_postgres=False) is None
    everything = ChainOptions(streams=("rsvps", "photos"))
    assert query_names(everything) == [
        "bronze-rsvps", "bronze-photos", "silver-rsvps", "silver-photos", "gold-rsvps", "mirror-rsvps", "score-rsvps"
    ]  # fmt: skip
    assert query_names(ChainOptions(stages=("gold",), streams=("rsvps",), mirror_to_postgres=False)) == ["gold-rsvps"]


def test_a_stage_the_chain_does_not_have_is_refused_and_each_stage_runs_on_its_path_s_trigger():
    from pipelines.stages import BY_NAME, ChainOptions

    with pytest.raises(ValueError, match="no stage silverr; the stages are bronze, silver, gold, score"):
        ChainOptions(stages=("silverr",))
    options = ChainOptions(interval="3 seconds", slow_interval="7 minutes", bronze_interval="1 minute")
    assert {name: (stage.path, options.trigger(stage.cadence)) for name, stage in BY_NAME.items()} == {
        "bronze": ("hot", {"processingTime": "1 minute"}),
        "silver": ("slow", {"processingTime": "7 minutes"}),
        "gold": ("hot", {"processingTime": "3 seconds"}),
        "score": ("slow", {"processingTime": "7 minutes"}),
    }
    assert ChainOptions(available_now=True).trigger("interval") == {"availableNow": True}


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
