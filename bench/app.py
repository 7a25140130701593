"""Benchmark: the app's time to first render and per refresh, at three data sizes, on the object store.

    make bench-app                           # or: .venv/bin/python -m bench.app --sizes 10000 100000 1000000

For each size N (RSVPs seen by the chain), gold and silver tables shaped like the chain's after N RSVPs at
20 RSVPs/s (one scored row per RSVP, ~0.7 region-minute rows per RSVP, a metrics row per query per 3 s
batch, ...) are written to the local S3 server with `deltalake`, in 10 commits each, as the app reads them.
Then, per page:
- first render: a fresh Streamlit AppTest run of the page script (the whole server-side run: every Delta
  read, every chart built), median of 3;
- refresh: a re-run of the same AppTest (what the live page's 5 s fragment does), median of 3;
- the data layer's reads alone, so the share of time in Delta reads is visible;
- in headless Chromium (when present): from navigation to the live page's numbers and its three charts
  drawn, median of 3 loads.
Writes bench/results/app.json and .md. Needs the local stack (make stack-up).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from bench.common import isolated, log, write_results
from common.settings import PROJECT_ROOT, Settings, load_settings
from common.store import Store
from lakehouse import catalogue
from pipelines.stages import ChainOptions, query_names

PAGES = ["live", "regions", "categories", "model", "health"]
COMMITS = 10
RATE = 20  # RSVPs per second of stream time
CITIES = 3000


def chunks(df: pd.DataFrame, n: int = COMMITS) -> Iterator[pd.DataFrame]:
    for part in np.array_split(np.arange(len(df)), n):
        yield df.iloc[part]


def tables(n: int, now: datetime) -> dict[tuple[str, str], pd.DataFrame]:
    """Gold and silver as the chain leaves them after n RSVPs arrived at RATE per second up to now."""
    rng = np.random.default_rng(n)
    seconds = n / RATE
    start = now - timedelta(seconds=seconds)
    hours = max(1, int(seconds // 3600) + 1)
    minutes = max(1, int(seconds // 60) + 1)
    groups = max(50, n // 20)
    city = rng.integers(0, CITIES, size=int(0.7 * n))
    minute_index = np.sort(rng.integers(0, minutes, size=len(city)))
    countries = np.array(["us", "gb", "de", "fr", "jp", "ca", "au", "in", "br", "es"])
    region_minute = pd.DataFrame({
        "minute": pd.to_datetime(start).floor("min") + pd.to_timedelta(minute_index, unit="min"),
        "country": countries[city % len(countries)], "state": None, "city": [f"city{c}" for c in city],
        "yes": rng.integers(1, 3, size=len(city)), "no": rng.integers(0, 2, size=len(city)), "guests": 0,
    })  # fmt: skip
    hour_rows = hours * min(CITIES, max(1, n // hours))
    hour_city = rng.integers(0, CITIES, size=hour_rows)
    region_hour = pd.DataFrame({
        "hour": pd.to_datetime(start).floor("h") + pd.to_timedelta(np.arange(hour_rows) % hours, unit="h"),
        "country": countries[hour_city % len(countries)], "state": None, "city": [f"city{c}" for c in hour_city],
        "yes": rng.integers(1, 30, size=hour_rows), "no": rng.integers(0, 5, size=hour_rows), "guests": 0,
    })  # fmt: skip
    scored_at = pd.to_datetime(start) + pd.to_timedelta(np.sort(rng.uniform(0, seconds, size=n)), unit="s")
    p = rng.uniform(0, 1, size=n)
    scored = pd.DataFrame({
        "rsvp_id": np.arange(n, dtype="int64"), "model_version": "v1", "probability_yes": p,
        "predicted": np.where(p >= 0.5, "yes", "no"), "scored_at": scored_at, "rsvp_time": scored_at,
        "member_id": rng.integers(0, n, size=n), "group_id": rng.integers(0, groups, size=n),
        "event_id": [f"e{i}" for i in rng.integers(0, n // 5 + 1, size=n)],
        "group_name": [f"group {g}" for g in rng.integers(0, groups, size=n)], "event_name": "an event",
        "country": countries[rng.integers(0, len(countries), size=n)],
        "answer": np.where(rng.uniform(0, 1, size=n) < 0.8, "yes", "no"), "version_mtime": 1,
        "version_partition": 0, "version_offset": np.arange(n, dtype="int64"),
    })  # fmt: skip
    batches = int(seconds // 3) + 1
    queries = query_names(ChainOptions(streams=("rsvps",)))
    batch_started = pd.to_datetime(start) + pd.to_timedelta(np.repeat(np.arange(batches) * 3, 5), unit="s")
    metrics = pd.DataFrame({
        "query": queries * batches, "run_id": "r", "batch_id": np.repeat(np.arange(batches), 5),
        "batch_started": batch_started, "input_rows": 60, "input_rows_per_s": 20.0, "processed_rows_per_s": 50.0,
        "batch_ms": rng.integers(500, 5000, size=5 * batches), "add_batch_ms": 400,
        "kafka_offsets_behind_max": 0, "kafka_offsets_behind_avg": 0.0,
    })  # fmt: skip
    fresh_rows = 3 * batches
    freshness = pd.DataFrame({
        "stage": ["silver", "gold", "postgres"] * batches, "query": "q", "batch_id": np.repeat(np.arange(batches), 3),
        "rows": 60, "p50_ms": rng.integers(2000, 6000, size=fresh_rows), "p95_ms": 7000, "max_ms": 8000,
        "visible_at": pd.to_datetime(start) + pd.to_timedelta(np.repeat(np.arange(batches) * 3, 3), unit="s"),
    })  # fmt: skip
    topics = [f"topic{t}" for t in range(500)]
    topic_trends = pd.DataFrame({
        "hour": pd.to_datetime(start).floor("h") + pd.to_timedelta(np.repeat(np.arange(hours), 500), unit="h"),
        "urlkey": topics * hours, "yes": rng.integers(0, 100, size=500 * hours), "no": 3,
        "rank": np.tile(np.arange(1, 501), hours), "previous_rank": None, "rank_change": None, "as_of": now,
    })  # fmt: skip
    category_trends = pd.DataFrame({
        "hour": pd.to_datetime(start).floor("h") + pd.to_timedelta(np.repeat(np.arange(hours), 12), unit="h"),
        "category": [f"category {c}" for c in range(12)] * hours, "yes": rng.integers(0, 500, size=12 * hours),
        "no": 30, "rank": np.tile(np.arange(1, 13), hours), "previous_rank": None, "rank_change": None,
        "categories_version": "v1",
    })  # fmt: skip
    bad = max(1, n // 200)
    return {
        ("gold", "rsvp_totals"): pd.DataFrame({"stream": ["rsvps"], "yes": [int(0.8 * n)], "no": [n - int(0.8 * n)],
                                               "guests": [n // 10]}),
        ("gold", "rsvps_by_region_minute"): region_minute,
        ("gold", "rsvps_by_region_hour"): region_hour,
        ("gold", "top_groups_5min"): pd.DataFrame({"group_id": np.arange(100), "yes": np.arange(100, 0, -1),
                                                   "no": 1, "as_of": now}),
        ("gold", "topic_trends"): topic_trends,
        ("gold", "category_trends"): category_trends,
        ("gold", "scored_rsvps"): scored,
        ("gold", "pipeline_metrics"): metrics,
        ("gold", "freshness"): freshness,
        ("silver", "groups"): pd.DataFrame({"group_id": np.arange(groups), "group_name": [f"group {g}" for g in
                                            range(groups)], "group_city": "city", "group_country": "us"}),
        ("silver", "topics"): pd.DataFrame({"urlkey": topics, "topic_name": [t.title() for t in topics]}),
        ("silver", "quarantine"): pd.DataFrame({
            "topic": "meetup.rsvps", "partition": 0, "offset": np.arange(bad), "reason": "bad_json",
            "detail": "line", "quarantined_at": now}),
    }  # fmt: skip


def write_lakehouse(settings: Settings, n: int) -> dict[str, int]:
    from deltalake import write_deltalake

    from app.reader import Lakehouse
    from lakehouse.aggregates import BY_NAME, long_table

    lake = Lakehouse(settings)
    options = lake.options
    sizes = {}
    frames = tables(n, datetime.now(UTC))
    counted = {name: frames.pop(("gold", name)) for (layer, name) in list(frames) if name in BY_NAME}
    for (layer, name), df in frames.items():
        for part in chunks(df) if len(df) >= COMMITS else [df]:
            write_deltalake(lake.uri(catalogue.table(layer, name)), part, mode="append", storage_options=options)
        sizes[f"{layer}.{name}"] = len(df)
    # the count aggregates are partitions of one long table, as the chain writes them
    for name, df in counted.items():
        for part in chunks(df) if len(df) >= COMMITS else [df]:
            write_deltalake(lake.uri(catalogue.GOLD_COUNTS), long_table({name: part}), mode="append",
                            partition_by=["aggregate"], storage_options=options)  # fmt: skip
        sizes[f"gold.{name}"] = len(df)
    from tests.app.conftest import model_record

    store = Store(settings)
    store.write("models/rsvp_response/v1/metadata.json", json.dumps(model_record()).encode())
    store.write("models/rsvp_response/CURRENT", json.dumps({"version": "v1"}).encode())
    return sizes


def median_seconds(run: Callable[[], object], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def page_times(page: str) -> tuple[float, float]:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    path = str(PROJECT_ROOT / "app" / "views" / f"{page}.py")

    def first() -> None:
        st.cache_data.clear()
        at = AppTest.from_file(path, default_timeout=300).run()
        assert not at.exception, f"{page}: {at.exception}"

    at = AppTest.from_file(path, default_timeout=300).run()
    return median_seconds(first), median_seconds(lambda: at.run())


def read_times(settings: Settings) -> dict[str, float]:
    from app import queries, reader

    lake = reader.Lakehouse(settings)
    reads = {
        "totals": lambda: queries.totals(lake),
        "rate_per_minute": lambda: queries.rate_per_minute(lake, 60),
        "top_groups": lambda: queries.top_groups(lake),
        "scored_feed": lambda: queries.scored_feed(lake, 20),
        "live_accuracy": lambda: queries.live_accuracy(lake),
        "regions": lambda: queries.regions(lake, "city"),
        "pipeline_metrics": lambda: queries.pipeline_metrics(lake),
    }
    return {name: median_seconds(read) for name, read in reads.items()}


def browser_first_render(settings_env: dict[str, str], port: int = 8597) -> float | None:
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if not os.path.exists(chromium):
        log(f"no {chromium}: browser timing skipped")
        return None
    from playwright.sync_api import sync_playwright

    app = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "--port", str(port)], cwd=PROJECT_ROOT, env=settings_env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        from tests.e2e.test_browser import plotted_points, wait_for_http

        wait_for_http(f"http://127.0.0.1:{port}/_stcore/health")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
            times = []
            for _ in range(4):  # the first load warms the server's imports; the median of the next 3 is reported
                page = browser.new_page(viewport={"width": 1400, "height": 1800})
                t0 = time.perf_counter()
                page.goto(f"http://127.0.0.1:{port}/")
                page.locator('[data-testid="stMetric"]', has_text="yes").first.wait_for(timeout=300_000)
                page.wait_for_function(
                    "() => [...document.querySelectorAll('.js-plotly-plot')].filter(el => el.calcdata).length >= 3",
                    timeout=300_000,
                )
                times.append(time.perf_counter() - t0)
                assert len([n for n in plotted_points(page) if n > 0]) >= 3
                page.close()
            browser.close()
        return statistics.median(times[1:])
    finally:
        os.killpg(app.pid, 15)
        app.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args(argv)
    base = load_settings()
    results = []
    for n in args.sizes:
        settings = isolated(base, f"benchapp{n}x{int(time.time())}")
        log(f"{n:,} RSVPs: writing tables under {settings.lakehouse_root}")
        t0 = time.perf_counter()
        sizes = write_lakehouse(settings, n)
        log(f"  written in {time.perf_counter() - t0:.1f} s: {sizes}")
        os.environ["LAKEHOUSE_ROOT"] = settings.lakehouse_root
        row = {"rsvps": n, "rows": sizes, "pages": {}, "reads": read_times(settings)}
        for page in PAGES:
            first, refresh = page_times(page)
            row["pages"][page] = {"first_render_s": first, "refresh_s": refresh}
            log(f"  {page}: first render {first:.2f} s, refresh {refresh:.2f} s")
        if not args.no_browser:
            row["browser_live_first_render_s"] = browser_first_render({**os.environ})
            log(f"  browser, live page drawn: {row['browser_live_first_render_s']}")
        log(f"  reads: { {k: round(v, 3) for k, v in row['reads'].items()} }")
        results.append(row)
        Store(settings).delete_tree("")

    table = [
        "| RSVPs | scored rows | region-minute rows | page | first render (s) | refresh (s) |",
        "|---:|---:|---:|---|---:|---:|",
    ]
    for row in results:
        for page, t in row["pages"].items():
            table.append(
                f"| {row['rsvps']:,} | {row['rows']['gold.scored_rsvps']:,} | "
                f"{row['rows']['gold.rsvps_by_region_minute']:,} | {page} | {t['first_render_s']:.2f} | "
                f"{t['refresh_s']:.2f} |"
            )
    table += ["", "| RSVPs | browser: live page drawn (s) | " + " | ".join(results[0]["reads"]) + " |",
              "|---:|---:|" + "---:|" * len(results[0]["reads"])]  # fmt: skip
    for row in results:
        browser = row.get("browser_live_first_render_s")
        table.append(
            f"| {row['rsvps']:,} | {'' if browser is None else f'{browser:.2f}'} | "
            + " | ".join(f"{v:.3f}" for v in row["reads"].values())
            + " |"
        )
    write_results("app", {"results": results, "rate_rsvps_per_s": RATE, "commits_per_table": COMMITS}, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
