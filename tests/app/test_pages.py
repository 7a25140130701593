"""Streamlit AppTest of every page: with data, and with the empty states that say what to run."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from common.settings import PROJECT_ROOT

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
    assert list(feed["group_name"]) == ["Hikers", "Coders"] or set(feed["group_name"]) == {"Hikers", "Coders"}
    assert {"probability_yes", "model_version", "answer"} <= set(feed.columns)


def test_the_live_page_keeps_the_users_selection_across_a_rerun(lake):
    at = run("live")
    at.slider(key="live_minutes").set_value(30).run()
    at.run()
    assert at.slider(key="live_minutes").value == 30 and not at.exception


def test_regions_draws_the_map_and_filters_cities(lake):
    at = run("regions")
    assert not at.exception and charts(at) == 1
    at.multiselect(key="regions_countries").set_value(["gb"]).run()
    assert list(at.dataframe[0].value["city"]) == ["London"]


def test_categories_and_topics_rank_both(lake):
    at = run("categories")
    assert not at.exception and charts(at) == 2
    assert list(at.dataframe[0].value["category"]) == ["Hiking / Outdoors", "other"]


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
    assert not at.exception and charts(at) == 5
    assert list(at.dataframe[0].value["reason"]) == ["bad_json"]


@pytest.mark.parametrize("page", ["live", "regions", "categories", "health"])
def test_every_data_page_says_what_to_run_before_there_is_data(empty_lake, page):
    at = run(page)
    assert not at.exception
    assert "No data yet" in infos(at) and "make demo" in infos(at)


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
