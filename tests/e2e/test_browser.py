"""The app in real headless Chromium (Debian's package, driven by Playwright) against a running system,
started as a user starts it: `meetup-demo` (replay server -> producer -> Kafka -> the whole chain -> the
app, each its own process), and stopped as a user stops it, with Ctrl-C.

Screenshots of every page are kept in tests/artifacts/screenshots/ (not committed).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from common.settings import PROJECT_ROOT
from ml import features as X
from ml import model as M
from ml.registry import Registry
from pipelines.cadence import FIRST_SNAPSHOT_AFTER_S
from pipelines.gold.job import WRITES_PHASE
from tests.app.conftest import model_record
from tests.conftest import new_name
from tests.helpers import wait_until
from tests.integration.lakehouse import isolated, process_env
from tests.unit.test_ml_features import T0, messages, rsvp

pytestmark = pytest.mark.integration

SHOTS = PROJECT_ROOT / "tests" / "artifacts" / "screenshots"
# the snapshot tables (top groups, topics) come with the chain's first snapshot round, FIRST_SNAPSHOT_AFTER_S
# after its start (pipelines/cadence.py), and the round itself takes a while under load
SNAPSHOT_WAIT_S = FIRST_SNAPSHOT_AFTER_S + 300
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
PAGES = {"live": "Live", "regions": "Regions", "categories": "Categories and topics", "events": "Events and groups",
         "model": "Model", "health": "Pipeline health", "query": "Query the PostgreSQL mirror"}  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


@pytest.fixture(scope="module")
def system(stack, spark, tmp_path_factory):
    settings = isolated(stack, new_name())
    # a real MLlib model in this lakehouse (fitted on a few synthetic RSVPs), so the chain scores and the form answers
    entries = [
        rsvp(i, member=i % 7, guests=i % 3, mtime=T0 + i, response="no" if i % 4 == 0 else "yes") for i in range(1, 61)
    ]
    labelled = X.rsvp_features(messages(spark, *entries)).withColumn(
        "label", (F.col("first_response") == "yes").cast("double")
    )
    Registry(settings).save(M.fit("logistic_regression", labelled), model_record())
    logs = tmp_path_factory.mktemp("system")
    env = process_env(settings)
    stream_port, app_port = free_port(), free_port()
    demo = subprocess.Popen(
        [sys.executable, "-m", "demo.run", "--no-browser", "--state-dir", str(logs), "--stream-port",
         str(stream_port), "--app-port", str(app_port), "--speed", "10", "--interval", "3 seconds",
         "--status-every", "15"],
        cwd=PROJECT_ROOT, env=env, stdout=(logs / "demo.out").open("w"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        wait_for_http(f"http://127.0.0.1:{app_port}/_stcore/health", timeout=180)
        yield Running(f"http://127.0.0.1:{app_port}", logs, demo)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGTERM)
            try:
                demo.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(demo.pid, signal.SIGKILL)
        for pid_file in logs.glob("*.pid"):  # anything the demo left behind
            try:
                os.killpg(int(pid_file.read_text()), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass


@dataclass
class Running:
    url: str
    logs: Path
    demo: subprocess.Popen


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def open_page(browser, url: str, title: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1800})
    page.goto(url)
    page.get_by_role("heading", name=title).first.wait_for(timeout=60_000)
    return page


def plotted_points(page) -> list[int]:
    """Points drawn in each Plotly chart on the page: plotly.js's computed data (the traces themselves may
    hold base64 typed arrays, which have no length)."""
    return page.evaluate(
        "() => [...document.querySelectorAll('.js-plotly-plot')].map(el => (el.calcdata || [])"
        ".reduce((n, trace) => n + trace.length, 0))"
    )


def topic_bars(page) -> dict | None:
    """The top-topics chart's bars and the names on its axis (None until it is drawn)."""
    return page.evaluate(
        "() => { const plot = [...document.querySelectorAll('.js-plotly-plot')].find(p =>"
        " (p.querySelector('.gtitle') || {}).textContent?.startsWith('Top topics'));"
        " if (!plot) return null;"
        " const bars = plot.querySelectorAll('.trace.bars .point').length;"
        " const labels = [...plot.querySelectorAll('.ytick text')].filter(t => t.textContent.trim()).length;"
        " return bars ? {bars, labels} : null; }"
    )


def metric(page, label: str) -> int | None:
    found = page.locator('[data-testid="stMetric"]', has_text=label)
    if not found.count():
        return None
    return int(found.first.locator('[data-testid="stMetricValue"]').inner_text().replace(",", ""))


def test_the_live_page_fills_and_its_numbers_grow_while_the_stream_runs(system, browser):
    url, logs = system.url, system.logs
    page = open_page(browser, url, "Live")
    first = wait_until(lambda: metric(page, "yes"), timeout=420)
    assert first, f"no totals within 7 minutes; chain log: {(logs / 'chain.log').read_text()[-3000:]}"
    later = wait_until(lambda: (metric(page, "yes") or 0) > first and metric(page, "yes"), timeout=240)
    assert later and later > first, "the live page's numbers grow without a reload"
    # the top groups come from a snapshot table (see SNAPSHOT_WAIT_S)
    drawn = wait_until(lambda: len([n for n in plotted_points(page) if n > 0]) >= 3, timeout=SNAPSHOT_WAIT_S)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "live.png"), full_page=True)
    assert drawn, f"points per chart on the live page: {plotted_points(page)} (see {SHOTS / 'live.png'})"
    # how far behind Kafka it is, in words: a running demo is fresh or behind, never stalled
    banner = page.get_by_text(re.compile(r"^(Fresh|Behind): the newest RSVPs here were \d+ (s|min) behind Kafka"))
    assert banner.count() == 1, page.locator('[data-testid="stAlert"]').all_inner_texts()
    assert not page.locator('[data-testid="stException"]').count()


@pytest.mark.parametrize("path", ["regions", "categories", "events", "model", "health", "query"])
def test_every_page_loads_without_an_exception(system, browser, path):
    url = system.url
    page = open_page(browser, f"{url}/{path}", PAGES[path])
    # the page's script has run to its end once Streamlit's running indicator has gone (deadline 2 minutes)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="detached", timeout=120_000)
    assert not page.locator('[data-testid="stException"]').count()
    if path in ("regions", "health"):
        assert wait_until(lambda: any(n > 0 for n in plotted_points(page)), timeout=120), f"{path}: no chart data"
    if path == "categories":  # the top topics (a snapshot table, as the live page's groups): a name per bar
        labelled = wait_until(lambda: topic_bars(page), timeout=SNAPSHOT_WAIT_S)
        assert labelled and labelled["bars"] == labelled["labels"] > 0, labelled
    if path == "health":  # the chart of where each query's batch time goes, drawn with its phases named
        phases = page.get_by_text("Where a batch's time goes")
        assert wait_until(lambda: phases.count() > 0, timeout=180), "health: no batch phases chart"
        # gold's hot-path phase, named in the legend once a gold batch with rows has been flushed
        named = page.get_by_text(WRITES_PHASE)
        assert wait_until(lambda: named.count() > 0, timeout=300), "health: gold's phases are not drawn"
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{path}.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 800})  # a laptop's screen
    page.screenshot(path=str(SHOTS / f"{path}-1280.png"), full_page=True)
    page.set_viewport_size({"width": 1400, "height": 1800})
    if path == "health":  # and the phases chart, below the fold (Streamlit scrolls inside its own container:
        # a screenshot of the chart's element is scrolled to it, where a page screenshot shows the top)
        chart = page.locator('[data-testid="stPlotlyChart"]', has_text="Where a batch's time goes").first
        chart.screenshot(path=str(SHOTS / "health-phases.png"))


def test_the_regions_map_draws_its_countries_offline(system, browser):
    """The world map's outlines come from the app itself: the page draws land and shaded countries, and no
    request of the page's leaves the app (this machine has no internet, nor may a user's)."""
    url = system.url
    page = browser.new_page(viewport={"width": 1400, "height": 1800})
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(f"{url}/regions")
    page.get_by_role("heading", name="Regions").first.wait_for(timeout=60_000)

    def drawn() -> dict[str, int]:  # plotly.js's own SVG: the base map's land and one path per shaded country
        return page.evaluate(
            "() => ({land: document.querySelectorAll('.js-plotly-plot .geo .land path').length,"
            " shaded: document.querySelectorAll('.js-plotly-plot .geo path.choroplethlocation').length})"
        )

    shapes = wait_until(lambda: (lambda d: d if d["land"] and d["shaded"] else None)(drawn()), timeout=180)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.locator('[data-testid="stPlotlyChart"]').first.screenshot(path=str(SHOTS / "regions-map.png"))
    assert shapes, f"the map drew {drawn()} (see {SHOTS / 'regions-map.png'})"
    outside = sorted({u for u in requested if not u.startswith((url, "data:", "blob:"))})
    assert not outside, f"the page asked outside the app for {outside}"


@pytest.mark.slow  # ~100 s, the app's own local Spark starting; tests/app/test_pages_on_the_stack.py covers the form
def test_the_scoring_form_returns_a_probability(system, browser):
    url = system.url
    page = open_page(browser, f"{url}/model", "Model")
    page.get_by_role("button", name="Score").click()
    shown = page.locator('[data-testid="stMetric"]', has_text="p(yes) by")
    shown.wait_for(timeout=180_000)  # the first score starts a local Spark in the app
    value = float(shown.locator('[data-testid="stMetricValue"]').inner_text())
    assert 0.0 <= value <= 1.0  # the synthetic model is sure of itself: 1.000 is a fair answer
    page.screenshot(path=str(SHOTS / "model-scored.png"), full_page=True)


def test_the_query_page_rejects_a_write(system, browser):
    url = system.url
    page = open_page(browser, f"{url}/query", "Query the PostgreSQL mirror")
    box = page.get_by_role("textbox", name="SQL")
    box.fill("DELETE FROM rsvps")
    box.press("Control+Enter")  # commit the text area's value before the click
    page.get_by_role("button", name="Run").click()
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        # an error alert, not the caption (which also says "read-only transaction")
        page.locator('[data-testid="stAlert"]', has_text="cannot execute").first.wait_for(timeout=60_000)
    finally:
        page.screenshot(path=str(SHOTS / "query-refused.png"), full_page=True)


def test_the_demo_said_what_runs_and_ctrl_c_stops_everything_cleanly(system):
    said = (system.logs / "demo.out").read_text()
    for part in ("server", "producer", "chain", "app"):
        assert f"demo:   {part}" in said, said
    assert "model     model v1 exists" in said  # a model was there: the demo does not train another
    assert "totals yes" in said  # its status lines report the tables
    pids = {p.stem: int(p.read_text()) for p in system.logs.glob("*.pid")}
    assert set(pids) == {"server", "producer", "chain", "app"}
    os.killpg(system.demo.pid, signal.SIGINT)  # what Ctrl-C in its terminal sends
    assert system.demo.wait(timeout=300) == 0  # server, producer and app get 30 s each, the chain 150 s
    assert "demo: stopped" in (system.logs / "demo.out").read_text()
    for name, pid in pids.items():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # every part has exited
        assert not (system.logs / f"{name}.pid").exists()
    # not killed with its JVM: its last log line (time, level, command, component: message)
    chain_log = (system.logs / "chain.log").read_text()
    assert re.search(r"INFO meetup-chain pipelines\.chain: stopped cleanly$", chain_log, re.M)
    assert "Exception in thread" not in chain_log  # a batch the stop cut ended its query, not its thread
