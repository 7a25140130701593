"""The app shared off loopback, with a login configured: a browser that has not logged in sees the login
button and nothing of the data (headless Chromium; the identity provider is never reached)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from common.settings import PROJECT_ROOT
from tests.e2e.test_browser import SHOTS, browser, free_port, wait_for_http  # noqa: F401 - browser is a fixture
from tests.unit.test_auth import GOOD

pytestmark = pytest.mark.integration


def test_a_shared_app_shows_the_login_and_not_the_data(browser, tmp_path):  # noqa: F811
    port = free_port()
    secrets = tmp_path / "secrets.toml"
    good = {**GOOD, "redirect_uri": f"http://127.0.0.1:{port}/oauth2callback"}
    secrets.write_text("[auth]\n" + "".join(f'{key} = "{value}"\n' for key, value in good.items()))
    app = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "--address", "0.0.0.0", "--port", str(port), "--secrets", str(secrets)],
        cwd=PROJECT_ROOT, stdout=(tmp_path / "app.out").open("w"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        wait_for_http(f"http://127.0.0.1:{port}/_stcore/health", timeout=90)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"http://127.0.0.1:{port}/")
        login = page.get_by_role("button", name="Log in")
        login.wait_for(timeout=60_000)
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "login.png"))
        assert page.get_by_role("heading", name="meetup-rsvps").count() == 1
        for hidden in ("Live", "Regions", "Pipeline health", "Query the PostgreSQL mirror"):
            assert page.get_by_role("heading", name=hidden).count() == 0, hidden
        assert page.locator('[data-testid="stMetric"], [data-testid="stPlotlyChart"]').count() == 0
        assert page.locator('[data-testid="stSidebarNav"]').count() == 0, "no page list before the login"
        assert "(login required)" in (tmp_path / "app.out").read_text()
        page.goto(f"http://127.0.0.1:{port}/query")  # a deep link is no way around it
        page.get_by_role("button", name="Log in").wait_for(timeout=60_000)
        assert page.get_by_role("textbox", name="SQL").count() == 0
    finally:
        os.killpg(app.pid, signal.SIGTERM)
        app.wait(timeout=30)
