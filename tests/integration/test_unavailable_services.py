"""A stopped or misconfigured service gives a prompt error that names it, never a hang."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from dataclasses import replace

import pytest

from common import health
from common.settings import PROJECT_ROOT, Settings

pytestmark = pytest.mark.integration


def _free_port() -> int:
    """A loopback port with nothing listening on it: what a stopped service looks like."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_stopped_kafka_is_named(stack: Settings):
    dead = replace(stack, kafka=replace(stack.kafka, bootstrap_servers=f"127.0.0.1:{_free_port()}"))
    with pytest.raises(health.ServiceUnavailable, match=r"Kafka at 127\.0\.0\.1:\d+ is not reachable.*KAFKA_BOOTSTRAP"):
        health.check_kafka(dead, timeout=3)


def test_stopped_object_store_is_named(stack: Settings):
    dead = replace(stack, s3=replace(stack.s3, endpoint=f"http://127.0.0.1:{_free_port()}"))
    with pytest.raises(
        health.ServiceUnavailable, match=r"S3 at http://127\.0\.0\.1:\d+ \(S3_ENDPOINT\) is not reachable"
    ):
        health.check_s3(dead, timeout=2)


def test_stopped_postgres_is_named(stack: Settings):
    dead = replace(stack, postgres=replace(stack.postgres, port=_free_port()))
    with pytest.raises(
        health.ServiceUnavailable, match=r"PostgreSQL at 127\.0\.0\.1:\d+ \(POSTGRES_HOST / POSTGRES_PORT\)"
    ):
        health.check_postgres(dead, timeout=2)


def test_wrong_credentials_and_missing_bucket_are_named(stack: Settings, monkeypatch):
    from common.settings import load_settings

    with pytest.raises(health.ServiceUnavailable, match="does not exist"):
        health.check_s3(replace(stack, lakehouse_root="s3a://no-such-bucket-here/lake"))
    wrong_pg = replace(stack, postgres=replace(stack.postgres, password="not-the-password"))
    with pytest.raises(health.ServiceUnavailable, match="password authentication failed"):
        health.check_postgres(wrong_pg)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")  # exported: it wins over .stack/env
    wrong_key = load_settings()
    assert wrong_key.s3.secret_access_key == "not-the-secret"
    with pytest.raises(health.ServiceUnavailable, match="refused the credentials"):
        health.check_s3(replace(wrong_key, lakehouse_root=stack.lakehouse_root))


def test_preflight_lists_every_failure_at_once(stack: Settings):
    dead = replace(
        stack,
        kafka=replace(stack.kafka, bootstrap_servers=f"127.0.0.1:{_free_port()}"),
        postgres=replace(stack.postgres, port=_free_port()),
    )
    with pytest.raises(health.ServiceUnavailable) as raised:
        health.preflight(dead)
    message = str(raised.value)
    assert "Kafka" in message and "PostgreSQL" in message and "S3" not in message


def test_stack_status_reports_a_stopped_service_and_fails(stack: Settings, tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "MEETUP_STACK_DIR": str(stack.stack_dir),
        "S3_ENDPOINT": f"http://127.0.0.1:{_free_port()}",
    }
    result = subprocess.run(
        [sys.executable, "-m", "stack.cli", "status"], capture_output=True, text=True, env=env, cwd=PROJECT_ROOT
    )
    lines = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert result.returncode == 1
    assert "healthy" not in lines["s3"]
    assert lines["kafka"].endswith("healthy") and lines["postgres"].endswith("healthy")


COMMANDS = {  # command line -> the module it runs, and one service it checks before starting Spark
    "meetup-chain": ("pipelines.chain", "postgres"),
    "meetup-replay": ("pipelines.replay", "s3"),
    "meetup-maintain": ("pipelines.maintenance", "s3"),
    "meetup-gold": ("pipelines.gold.show", "s3"),
    "meetup-train": ("ml.train", "s3"),
    "meetup-score": ("ml.score", "s3"),
    "meetup-categories": ("ml.categories", "s3"),
    "meetup-ingest": ("ingest.producer", "kafka"),
    "meetup-demo": ("demo.run", "kafka"),
}
WRONG_PORT = {  # service -> (the variable, what its one line must say)
    "kafka": ("KAFKA_BOOTSTRAP_SERVERS", r"Kafka at 127\.0\.0\.1:{port} is not reachable \(KAFKA_BOOTSTRAP_SERVERS\)"),
    "s3": ("S3_ENDPOINT", r"S3 at http://127\.0\.0\.1:{port} \(S3_ENDPOINT\) is not reachable"),
    "postgres": ("POSTGRES_PORT", r"PostgreSQL at 127\.0\.0\.1:{port} \(POSTGRES_HOST / POSTGRES_PORT\)"),
}


def run_command(module: str, env: dict[str, str], tmp_path) -> subprocess.CompletedProcess:
    extra = {
        "ml.score": [str(tmp_path / "capture.jsonl")],
        "demo.run": ["--state-dir", str(tmp_path / "demo")],
        "pipelines.replay": ["--list"],
    }
    (tmp_path / "capture.jsonl").write_text("")
    return subprocess.run(
        [sys.executable, "-m", module, *extra.get(module, [])],
        capture_output=True, text=True, env={**os.environ, **env}, cwd=PROJECT_ROOT, timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_wrong_port_ends_the_command_with_one_line_naming_the_setting(stack: Settings, tmp_path, command):
    module, service = COMMANDS[command]
    port = _free_port()
    variable, expected = WRONG_PORT[service]
    value = {"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}", "S3_ENDPOINT": f"http://127.0.0.1:{port}"}.get(
        variable, str(port)
    )
    result = run_command(module, {variable: value}, tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # no traceback, no retry storm: the one line
    assert re.match(rf"{command}: {expected.format(port=port)}", lines[0]), lines[0]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_malformed_setting_ends_the_command_with_one_line_naming_it(tmp_path, command):
    module, _ = COMMANDS[command]
    result = run_command(module, {"POSTGRES_PORT": "five-four-three-three"}, tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [
        f"{command}: POSTGRES_PORT must be an integer, got 'five-four-three-three'"
    ]
