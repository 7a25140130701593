"""Shared fixtures: settings from the environment (over `.stack/env`), one SparkSession per run.

Integration tests talk to the real services of the local stack; `make test` starts it first. When
a service is down they fail at once with the pre-flight message, rather than skip silently.
"""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest

from common import health, logs
from common.settings import Settings, load_settings
from common.spark import build_spark

RUN_ID = uuid.uuid4().hex[:8]
logs.setup("pytest")  # the code under test logs as a command does: time, level, component, message


@pytest.fixture(scope="session")
def settings() -> Settings:
    """Stack settings, with a lakehouse prefix of this test run's own so runs never share tables."""
    base = load_settings()
    root = base.path(f"test-runs/{RUN_ID}") if base.bucket else base.lakehouse_root
    return replace(base, lakehouse_root=root)


@pytest.fixture(scope="session")
def stack(settings: Settings) -> Settings:
    """The settings, once every service of the local stack has answered."""
    try:
        health.preflight(settings)
    except health.ServiceUnavailable as error:
        pytest.fail(f"the local stack is not running (make stack-up):\n{error}", pytrace=False)
    return settings


@pytest.fixture(scope="session")
def spark(settings: Settings):
    session = build_spark(
        settings,
        "meetup-rsvps-tests",
        master="local[2]",
        extra_conf={
            "spark.sql.shuffle.partitions": "2",
            "spark.databricks.delta.snapshotPartitions": "2",
            "spark.default.parallelism": "2",
            "spark.ui.enabled": "false",
            "spark.driver.memory": "2g",
        },
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def new_name() -> str:
    """A short name no other test (or run) uses: for topics, tables, schemas and keys."""
    return f"t{RUN_ID}{uuid.uuid4().hex[:6]}"


@pytest.fixture
def unique() -> str:
    return new_name()
