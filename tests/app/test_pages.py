"""Streamlit AppTest of every page: with data, and with the empty states that say what to run."""

from __future__ import annotations

import json
import re
import shutil

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from common.settings import PROJECT_ROOT
from pipelines.cadence import FIRST_SNAPSHOT_WORDS, SLOW_INTERVAL_WORDS, SNAPSHOT_EVERY_WORDS
from tests.app.conftest import write

PAGES = ["live", "regions", "categories", "model", "health", "query"]


def run(page: str) -> AppTest:
    at = AppTest.from_file(str(PROJECT_ROOT / "app" / "views" / f"{page}.py"), default_timeout=60)
    return at.run()


def charts(at: AppTest) -> int:
    return len(at.get("plotly_chart"))


def infos(at: AppTest) -> str:
    return " | ".join(i.value for i in at.info)


def test_the_app_opens_on_the_live_page(lake):
    at = AppTest.from_file(str(PROJECT_ROOT / "app" / "main.py"), default_timeout=60).run()
    assert not at.exception
    assert at.title[0].value == "Live"


def test_live_shows_totals_rate_groups_and_the_scored_feed(lake):
    at = run("live")
    assert not at.exception
    assert [m.value for m in at.metric] == ["40", "9", "3"]
    assert charts(at) == 3  # rate, top groups, yes/no
    feed = at.dataframe[0].value
    assert sorted(feed["group_name"]) == ["Coders", "Hikers"]  # both scored at the same instant: either order
    # the answer and the model's p(yes) first, where a narrow window still shows them; the names after
    assert list(feed.columns[:4]) == ["scored_at", "answer", "probability_yes", "predicted"]
    assert {"group_name", "event_name", "model_version"} <= set(feed.columns)
    # gold's newest batch is days old and gold has not run since: red, in words
    assert len(at.error) == 1 and not at.success
    stalled = r"Stalled: gold's query is not running; its last RSVPs were 7 s behind Kafka\."
    assert re.fullmatch(stalled, at.error[0].value), at.error[0].value


def test_the_live_page_keeps_the_users_selection_across_a_rerun(lake):
    at = run("live")
    at.slider(key="live_minutes").set_value(30).run()
    at.run()
    assert at.slider(key="live_minutes").value == 30 and not at.exception


def test_regions_draws_the_map_and_filters_cities(lake):
    at = run("regions")
    assert not at.exception and charts(at) == 2  # countries, cities
    cities = figures(at)[1]["data"][0]
    assert (cities["type"], sorted(cities["hovertext"])) == ("scattergeo", ["London", "New York"])
    at.multiselect(key="regions_countries").set_value(["gb"]).run()
    assert list(at.dataframe[0].value["city"]) == ["London"]


def test_categories_and_topics_rank_both(lake):
    at = run("categories")
    assert not at.exception and charts(at) == 2
    assert list(at.dataframe[0].value["category"]) == ["Hiking / Outdoors", "other"]


def test_a_topic_counted_before_silver_has_its_name_is_shown_by_its_urlkey(lake):
    # gold counts straight from Kafka; silver, on its slower cadence, has not yet written the topic's name
    write(lake, "silver", "topics", pd.DataFrame({"urlkey": ["hiking"], "topic_name": ["Hiking"]}))
    _, topics_chart = figures(run("categories"))
    names = sorted(name for trace in topics_chart["data"] for name in trace["y"])
    assert names == ["Hiking", "tech"], names


def test_the_model_page_shows_metrics_curves_and_live_accuracy(lake):
    at = run("model")
    assert not at.exception
    assert charts(at) == 4  # ROC, PR, calibration, importances
    table = at.dataframe[0].value
    assert list(table["roc_auc"]) == [0.76, 0.5]
    accuracy = at.dataframe[1].value
    assert accuracy.loc[0, "scored"] == 2 and accuracy.loc[0, "accuracy"] == 0.5


def test_pipeline_health_shows_freshness_rates_lag_phases_and_quarantine(lake):
    at = run("health")
    assert not at.exception and charts(at) == 6
    assert list(at.dataframe[0].value["reason"]) == ["bad_json"]
    hot, slow, _, durations, *_ = figures(at)
    # each path on its own chart, in seconds, as a person reads a lag: the fixture's p95 of 7,000 ms (gold) and
    # 4,000 ms (silver)
    for chart, stage, seconds in ((hot, "gold", 7.0), (slow, "silver", 4.0)):
        assert chart["layout"]["yaxis"]["title"]["text"] == "seconds behind Kafka (p95)"
        assert [(trace["name"], values(trace["y"])) for trace in chart["data"]] == [(stage, [seconds])]
    assert "hot path" in hot["layout"]["title"]["text"] and "slow path" in slow["layout"]["title"]["text"]
    assert durations["layout"]["yaxis"]["title"]["text"] == "seconds"
    lag = next(f for f in figures(at) if f["layout"]["title"]["text"] == "Kafka offsets behind latest")
    assert lag["layout"]["yaxis"]["rangemode"] == "tozero"  # no axis below zero when nothing lags


def test_a_few_catch_up_batches_do_not_flatten_the_freshness_chart(lake, monkeypatch):
    from app import queries

    start = pd.Timestamp("2026-12-05 10:00", tz="UTC")
    p95_ms = [400_000, 310_000] + [5_000 + 100 * i for i in range(30)]  # a restart's catch-up, then steady
    catch_up = pd.DataFrame({"stage": "gold", "query": "gold-rsvps", "batch_id": range(32), "rows": 10,
                             "p50_ms": 1_000, "p95_ms": p95_ms, "max_ms": p95_ms,
                             "visible_at": [start + pd.Timedelta(seconds=10 * i) for i in range(32)]})  # fmt: skip
    monkeypatch.setattr(queries, "freshness", lambda lake, span=None: catch_up)
    at = run("health")
    assert not at.exception
    axis = figures(at)[0]["layout"]["yaxis"]
    assert axis["range"][0] == 0 and 7.9 < axis["range"][1] < 20, "the steady 5-8 s batches fill the chart"
    assert any("2 of 32 batches are above" in c.value and "up to 400 s" in c.value for c in at.caption)

    steady = catch_up.assign(p95_ms=[5_000 + 100 * i for i in range(32)])
    monkeypatch.setattr(queries, "freshness", lambda lake, span=None: steady)
    axis = figures(run("health"))[0]["layout"]["yaxis"]
    assert "range" not in axis and axis["rangemode"] == "tozero", "nothing cut when nothing stands out"


def test_the_slow_path_is_drawn_on_its_own_chart_not_cut_off_as_a_catch_up(lake, monkeypatch):
    from app import queries

    start = pd.Timestamp("2026-12-06 18:00", tz="UTC")
    # a steady hour of the demo: gold every 10 s at 5-8 s behind, silver every 2 minutes at 150-210 s behind
    gold = [("gold", start + pd.Timedelta(seconds=10 * i), 5_000 + 100 * (i % 30)) for i in range(360)]
    silver = [("silver", start + pd.Timedelta(minutes=2 * i), 150_000 + 2_000 * i) for i in range(30)]
    rows = pd.DataFrame(gold + silver, columns=["stage", "visible_at", "p95_ms"]).assign(
        query=lambda df: df["stage"] + "-rsvps", batch_id=0, rows=10, p50_ms=1_000, max_ms=lambda df: df["p95_ms"]
    )
    monkeypatch.setattr(queries, "freshness", lambda lake, span=None: rows)
    at = run("health")
    assert not at.exception
    hot, slow = figures(at)[:2]
    assert [trace["name"] for trace in hot["data"]] == ["gold"] and [t["name"] for t in slow["data"]] == ["silver"]
    # every silver batch is on the chart, none called a catch-up; the hot path's axis is its own seconds
    assert "range" not in slow["layout"]["yaxis"] and max(values(slow["data"][0]["y"])) == 208.0
    assert "range" not in hot["layout"]["yaxis"] and max(values(hot["data"][0]["y"])) == 7.9
    assert not any("off the top" in c.value for c in at.caption)

    # the chain's start: silver's and scoring's first batches catch up on hours (3 of 18 slow batches here)
    started = rows[rows["visible_at"] >= start + pd.Timedelta(minutes=30)]
    first = start + pd.Timedelta(minutes=29)
    catch_up = pd.DataFrame({"stage": ["silver", "score", "silver"], "visible_at": [first] * 3,
                             "p95_ms": [8_000_000, 8_050_000, 7_900_000]})  # fmt: skip
    catch_up = catch_up.assign(query="x", batch_id=0, rows=10, p50_ms=1_000, max_ms=catch_up["p95_ms"])
    rows = pd.concat([catch_up, started])
    monkeypatch.setattr(queries, "freshness", lambda lake, span=None: rows)
    at = run("health")
    slow = figures(at)[1]
    assert slow["layout"]["yaxis"]["range"][1] < 500, "the steady 3-4 minutes fill the slow path's chart"
    assert any("3 of 18 batches are above" in c.value and "up to 8050 s" in c.value for c in at.caption)


@pytest.mark.parametrize("page", ["live", "regions", "categories", "health"])
def test_every_data_page_says_what_to_run_before_there_is_data(empty_lake, page):
    at = run(page)
    assert not at.exception
    assert "No data yet" in infos(at) and "make demo" in infos(at)


def test_a_snapshot_not_yet_written_says_when_the_running_chain_writes_it(lake):
    # the chain runs (counts are there) but its first snapshot round has not come yet
    shutil.rmtree(lake / "g1" / "gold" / "top_groups_5min")
    at = run("live")
    assert not at.exception
    when = f"first snapshot round, {FIRST_SNAPSHOT_WORDS} and then {SNAPSHOT_EVERY_WORDS}"
    assert "`top_groups_5min`" in infos(at) and when in infos(at)
    assert "run make demo" not in infos(at)


def test_a_scored_feed_not_yet_written_says_whether_to_train_or_to_wait(lake):
    # a model exists (v1), but the chain's scoring stage, on the slow path, has not committed a batch yet
    shutil.rmtree(lake / "g1" / "gold" / "scored_rsvps")
    waiting = infos(run("live"))
    expected = f"Model v1 exists: the chain's scoring stage writes its scores at its next batch ({SLOW_INTERVAL_WORDS})"
    assert expected in waiting
    assert "make train" not in waiting
    # and without a model, the same empty feed says to train one
    shutil.rmtree(lake / "models" / "rsvp_response")
    assert "RSVPs are scored once a model exists: run `make train`" in infos(run("live"))


def test_the_model_page_shows_the_online_calibration_in_use_and_its_history(lake):
    began = pd.to_datetime(
        ["2021-09-02 09:00:00", "2021-09-02 12:30:00", "2021-09-02 12:31:00", "2021-09-02 12:32:00"], utc=True
    )  # v1's first block, then the chain stopped for three and a half hours
    calibration = pd.DataFrame(
        {"block": [0, 1, 2, 2], "model_version": ["v1", "v1", "v1", "v0"], "shift": [0.3, 0.61, 0.85, -0.2],
         "answers": [0, 100, 200, 200], "yes_rate": [None, 0.86, 0.87, 0.87], "block_start": began}
    )  # fmt: skip
    write(lake, "gold", "score_calibration", calibration)
    at = run("model")
    assert not at.exception
    assert charts(at) == 5  # and the shift per block
    (in_use,) = [m.value for m in at.markdown if m.value.startswith("In use:")]
    # the current version's (v1) newest block, in words, and what its shift does to a raw 0.5
    assert in_use == (
        "In use: block 2 (from 2021-09-02 12:31:00): log-odds +0.85, fitted on 200 earlier answers (87% yes); "
        "a raw p(yes) of 0.50 is shown as 0.70"
    )
    history = figures(at)[-1]
    assert sorted(trace["name"] for trace in history["data"]) == ["v0", "v1"]
    # the line of v1 stops over the hours the chain was stopped: a gap between block 0 and block 1
    (v1,) = [trace for trace in history["data"] if trace["name"] == "v1"]
    assert [None if y is None or y != y else round(y, 2) for y in values(v1["y"])] == [0.3, None, 0.61, 0.85]


def test_the_model_page_says_to_train_before_there_is_a_model(empty_lake):
    at = run("model")
    assert not at.exception and "make train" in infos(at)


def test_a_store_that_is_down_is_named(monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_ROOT", "s3a://meetup-lakehouse/nowhere")
    monkeypatch.setenv("S3_ENDPOINT", "http://127.0.0.1:9")
    at = run("live")
    assert not at.exception
    assert any("http://127.0.0.1:9" in w.value and "make stack-up" in w.value for w in at.warning)


def test_the_query_page_shows_its_examples_and_names_a_database_that_is_down(monkeypatch):
    monkeypatch.setenv("POSTGRES_PORT", "9")
    monkeypatch.setenv("POSTGRES_READER_PASSWORD", "whatever")
    at = run("query")
    assert not at.exception and at.selectbox(key="query_example").options
    at.button(key="query_run").click().run()
    assert at.error and "does not answer" in at.error[0].value


def figures(at: AppTest) -> list[dict]:
    """The Plotly figures of a page, in order, as the browser gets them."""
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def values(array) -> list:
    """A figure's data array as Python numbers: Plotly sends numeric arrays as typed, base64 buffers."""
    if isinstance(array, dict) and "bdata" in array:
        import base64

        import numpy as np

        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"]).tolist()
    return list(array)


def test_bar_charts_name_every_bar_and_say_what_their_colours_mean(lake):
    categories_chart, topics_chart = figures(run("categories"))
    # one hour of categories: bars, not dots on an axis a millisecond wide
    assert {trace["type"] for trace in categories_chart["data"]} == {"bar"}
    assert categories_chart["layout"]["yaxis"]["type"] == "category"
    # the topics are coloured by a named move, one legend entry per move present, each with its colour
    legend = {trace["name"]: trace["marker"]["color"] for trace in topics_chart["data"]}
    assert legend == {"new this hour": "#1565C0"}  # neither topic was ranked the hour before
    assert topics_chart["layout"]["height"] >= 110 + 28 * 2 and topics_chart["layout"]["yaxis"]["type"] == "category"

    (importances,) = [f for f in figures(run("model")) if f["layout"]["title"]["text"] == "What the model weighs"]
    names = sorted(name for trace in importances["data"] for name in trace["y"])
    # the fixture's two features (member_yes_rate, guests), in words, as a person reads them
    assert names == ["guests brought", "member: yes rate so far"], names

    live = figures(run("live"))
    (groups,) = [f for f in live if f["layout"]["title"]["text"] == "Top groups, last 5 minutes"]
    assert groups["layout"]["yaxis"]["type"] == "category"  # group names, even all-digit ones, stay labels


def test_the_regions_map_gets_the_apps_own_country_outlines(lake):
    for chart in run("regions").get("plotly_chart"):  # both maps
        assert json.loads(chart.proto.config)["topojsonURL"] == "/app/static/topojson/"
    served = PROJECT_ROOT / "app" / "static" / "topojson" / "world_110m.json"
    countries = json.loads(served.read_text())["objects"]["countries"]["geometries"]
    assert {"USA", "GBR", "IND", "BRA"} <= {country.get("id") for country in countries}


def events_page(**query: str) -> AppTest:
    at = AppTest.from_file(str(PROJECT_ROOT / "app" / "views" / "events.py"), default_timeout=60)
    for name, value in query.items():
        at.query_params[name] = value
    return at.run()


def test_an_event_opened_by_its_deep_link_shows_its_counts_group_venue_and_scores(lake):
    at = events_page(event_id="e1")
    assert not at.exception
    assert at.header[0].value == "Walk"
    assert [m.value for m in at.metric] == ["1", "1"]  # Ann's yes and Bob's no
    (chart,) = figures(at)
    assert {trace["name"] for trace in chart["data"]} == {"yes", "no"}
    assert any("Central Park" in m.value for m in at.markdown)
    scored = at.dataframe[0].value
    assert list(scored["probability_yes"]) == [0.81] and list(scored["answer"]) == ["yes"]


def test_an_event_with_rsvps_in_one_minute_gets_an_hour_wide_chart_not_a_millisecond(lake):
    at = events_page(event_id="e2")  # one yes, in one minute
    assert not at.exception
    (chart,) = figures(at)
    low, high = (pd.Timestamp(t).tz_localize(None) for t in chart["layout"]["xaxis"]["range"])
    assert high - low == pd.Timedelta(hours=1)
    (minute,) = {pd.Timestamp(x).tz_localize(None) for trace in chart["data"] for x in trace["x"]}
    assert low < minute < high, "the minute is in the middle of the axis"


def test_a_group_page_lists_its_events_with_counts_and_the_members_who_come_back(lake):
    at = events_page(group_id="1")
    assert not at.exception
    assert at.header[0].value == "Hikers"
    events, returning = (d.value for d in at.dataframe)
    assert {(r.event_name, r.yes, r.no) for r in events.itertuples()} == {("Walk", 1, 1), ("Climb", 2, 0)}
    assert list(returning["member_name"]) == ["Ann"] and list(returning["events"]) == [2]
    assert any("Topics: Hiking" in m.value for m in at.markdown)


def test_search_finds_events_and_groups_by_name_or_id_and_unknown_ids_are_named(lake):
    at = events_page()
    at.text_input(key="events_search").set_value("walk").run()
    assert not at.exception and any("event: Walk" in m.value for m in at.markdown)
    at.text_input(key="events_search").set_value("2").run()
    assert any("group: Coders" in m.value for m in at.markdown)
    assert "no event nope in silver" in infos(events_page(event_id="nope"))
    assert events_page(group_id="x").error[0].value == "A group id is a number, not 'x'."


def test_the_as_of_line_follows_an_injected_lag(lake):
    """A gold batch that landed 3 s ago with RSVPs 45 s behind Kafka, gold running: amber, in words."""
    from deltalake import write_deltalake

    now = pd.Timestamp.now(tz="UTC").floor("s")
    gold = lake / "g1" / "gold"
    batch = {"stage": ["gold"], "query": ["gold-rsvps"], "batch_id": [7], "rows": [20], "p50_ms": [30_000],
             "p95_ms": [45_000], "max_ms": [46_000], "visible_at": [now - pd.Timedelta(seconds=3)]}  # fmt: skip
    write_deltalake(str(gold / "freshness"), pd.DataFrame(batch), mode="append")
    run_ = {"query": ["gold-rsvps"], "run_id": "r", "batch_id": [8], "batch_started": [now - pd.Timedelta(seconds=1)],
            "input_rows": [0], "input_rows_per_s": [0.0], "processed_rows_per_s": [0.0], "batch_ms": [900],
            "add_batch_ms": [800], "kafka_offsets_behind_max": [0], "kafka_offsets_behind_avg": [0.0]}  # fmt: skip
    write_deltalake(str(gold / "pipeline_metrics"), pd.DataFrame(run_), mode="append")
    at = run("live")
    assert not at.error and not at.success
    behind = r"Behind: the newest RSVPs here were 45 s behind Kafka \(landed \d s ago\)\."
    assert re.fullmatch(behind, at.warning[0].value), at.warning[0].value


def test_the_as_of_line_follows_the_chains_heartbeat(lake):
    """Gold running (its heartbeat 2 s old) and its newest batch 4 s behind: green; the chain stopped: red."""
    from deltalake import write_deltalake

    from common.settings import load_settings
    from pipelines import heartbeat

    now = pd.Timestamp.now(tz="UTC")
    landed = now.floor("s") - pd.Timedelta(seconds=5)
    batch = {"stage": ["gold"], "query": ["gold-rsvps"], "batch_id": [9], "rows": [5], "p50_ms": [3_000],
             "p95_ms": [4_000], "max_ms": [4_100], "visible_at": [landed]}  # fmt: skip
    write_deltalake(str(lake / "g1" / "gold" / "freshness"), pd.DataFrame(batch), mode="append")
    heartbeat.beat(load_settings(), "g1", ["bronze-rsvps", "gold-rsvps"], now=now - pd.Timedelta(seconds=2))
    at = run("live")
    assert not at.error and not at.warning
    assert at.success[0].value.startswith("Fresh: the newest RSVPs here were 4 s behind Kafka (landed ")
    heartbeat.beat(load_settings(), "g1", [])  # the chain stopped
    assert run("live").error[0].value == "Stalled: gold's query is not running; its last RSVPs were 4 s behind Kafka."
