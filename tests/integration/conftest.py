"""The one run of the real captures through the whole chain that several test modules read."""

from __future__ import annotations

import pytest

from pipelines.stages import STAGE_NAMES as STAGES
from tests.conftest import new_name
from tests.helpers import capture_frames, consume_with_coordinates, produce
from tests.integration.lakehouse import isolated, run_available_now

REAL = capture_frames()


@pytest.fixture(scope="session")
def real_run(stack, spark):
    """The 4,088 real messages through the whole chain once, every stage (no model yet: nothing is scored)."""
    settings = isolated(stack, new_name())
    produce(settings.kafka.bootstrap_servers, settings.kafka.topic("rsvps"), REAL)
    records = consume_with_coordinates(settings.kafka.bootstrap_servers, settings.kafka.topic("rsvps"), len(REAL))
    layout = run_available_now(spark, settings, stages=STAGES)
    return settings, layout, records
