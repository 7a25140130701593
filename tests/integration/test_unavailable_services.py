"""A stopped or misconfigured service gives a prompt error that names it, never a hang."""

from __future__ import annotations

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
    with pytest.raises(health.ServiceUnavailable, match="does not exist"):
        health.check_s3(replace(stack, lakehouse_root="s3a://no-such-bucket-here/lake"))
    wrong_pg = replace(stack, postgres=replace(stack.postgres, password="not-the-password"))
    with pytest.raises(health.ServiceUnavailable, match="password authentication failed"):
        health.check_postgres(wrong_pg)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(health.ServiceUnavailable, match="refused the credentials"):
        health.check_s3(stack)


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
