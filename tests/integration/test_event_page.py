"""An event's page opened from a deep link, in headless Chromium, on the real captures run through the chain:
its yes and no equal the independent computation from the Kafka records, and its group's page opens from it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter

import pytest

from common.settings import PROJECT_ROOT
from pipelines.gold.transforms import DEFAULT_LATENESS_MS
from tests.e2e.test_browser import SHOTS, browser, free_port, metric, wait_for_http  # noqa: F401 - a fixture
from tests.expected_gold import expected_gold
from tests.integration.lakehouse import process_env

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def app_on_real_run(real_run, tmp_path_factory):
    settings, _layout, records = real_run
    logs = tmp_path_factory.mktemp("event-page")
    port = free_port()
    app = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "--port", str(port)], cwd=PROJECT_ROOT,
        env={**process_env(settings), "MEETUP_APP_WARM_UP": "0"}, stdout=(logs / "app.out").open("w"),
        stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        wait_for_http(f"http://127.0.0.1:{port}/_stcore/health", timeout=90)
        yield f"http://127.0.0.1:{port}", records
    finally:
        os.killpg(app.pid, signal.SIGTERM)
        app.wait(timeout=30)


def test_an_event_opened_from_its_deep_link_shows_the_independently_computed_counts(app_on_real_run, browser):  # noqa: F811
    url, records = app_on_real_run
    expected = expected_gold(records, DEFAULT_LATENESS_MS)["events_by_minute"]
    yes, no = Counter(), Counter()
    for event_id, _minute, event_yes, event_no, _guests in expected:
        yes[event_id] += event_yes
        no[event_id] += event_no
    busiest = max(yes, key=lambda e: (yes[e] + no[e], e))  # the event with the most RSVPs in the captures

    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(f"{url}/events?event_id={busiest}")
    page.get_by_role("heading", name="Events and groups").first.wait_for(timeout=60_000)
    page.locator('[data-testid="stMetric"]').first.wait_for(timeout=60_000)
    page.locator('[data-testid="stPlotlyChart"]').first.wait_for(timeout=60_000)  # drawn after the numbers
    assert not page.locator('[data-testid="stException"]').count()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "event.png"), full_page=True)
    assert (metric(page, "yes"), metric(page, "no")) == (yes[busiest], no[busiest]), busiest
    assert page.locator('[data-testid="stPlotlyChart"]').count() == 1, "its RSVPs over time"

    page.get_by_role("link", name="Group:").first.click()  # from the event to its group
    page.get_by_text("Members who come back").first.wait_for(timeout=60_000)
    page.screenshot(path=str(SHOTS / "group.png"), full_page=True)
    assert not page.locator('[data-testid="stException"]').count()
    # the address bar says what is shown (Streamlit changes it in place: page.url only follows navigations)
    assert "?group_id=" in page.evaluate("() => window.location.href")
