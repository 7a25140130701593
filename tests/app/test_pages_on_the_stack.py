"""The scoring form with a real MLlib model persisted in the (local) lakehouse and a real Spark.
(The query page against the real mirror: tests/integration/test_app_query.py.)"""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest
from pyspark.ml.functions import vector_to_array
from pyspark.sql import functions as F
from streamlit.testing.v1 import AppTest

from app import scoring
from common.settings import PROJECT_ROOT, load_settings
from ml import features as X
from ml import model as M
from ml.registry import Registry
from tests.app.conftest import model_record
from tests.unit.test_ml_features import T0, messages, rsvp

pytestmark = pytest.mark.integration


def page(name: str) -> AppTest:
    return AppTest.from_file(str(PROJECT_ROOT / "app" / "views" / f"{name}.py"), default_timeout=180)


def fit_a_real_model(spark):
    """A real MLlib model, fitted on a few synthetic RSVPs (guests matter: every third one brings one or two)."""
    entries = [
        rsvp(i, member=i % 7, guests=i % 3, mtime=T0 + i, response="no" if i % 4 == 0 or i % 3 == 2 else "yes")
        for i in range(1, 61)
    ]
    features = X.rsvp_features(messages(spark, *entries))
    labelled = features.withColumn("label", (F.col("first_response") == "yes").cast("double"))
    return M.fit("logistic_regression", labelled)


def save_a_real_model(spark) -> str:
    """A real MLlib model saved and promoted in this lakehouse."""
    return Registry(load_settings()).save(fit_a_real_model(spark), model_record())


NOW_MS = 1_764_932_400_000  # the moment the form is submitted, fixed for the page and the expectation alike


def form_rsvp(guests: int) -> dict:
    """The RSVP the form's defaults describe, written out here by hand: "Saturday hike and happy hour", 48 hours
    ahead in a US group at longitude 0 with topics hiking and outdoors, at a venue 1.6 km from the group's
    centre, by a member with no history."""
    return {
        "rsvp_id": 1, "mtime": NOW_MS, "response": "yes", "guests": guests, "visibility": "public",
        "member": {"member_id": 1, "member_name": "someone"},
        "event": {"event_id": "e", "event_name": "Saturday hike and happy hour", "event_url": "-",
                  "time": NOW_MS + 48 * 3_600_000},
        "group": {"group_id": 1, "group_name": "g", "group_urlname": "g", "group_city": "-", "group_country": "us",
                  "group_lat": 0, "group_lon": 0,
                  "group_topics": [{"urlkey": "hiking", "topic_name": "Hiking"},
                                   {"urlkey": "outdoors", "topic_name": "Outdoors"}]},
        "venue": {"venue_id": 9, "venue_name": "v", "lat": 0.01, "lon": 0.01},
    }  # fmt: skip


def test_the_scoring_form_returns_what_the_fitted_model_gives_for_the_forms_rsvp(spark, lake, monkeypatch):
    model = fit_a_real_model(spark)
    version = Registry(load_settings()).save(model, model_record())
    monkeypatch.setattr(scoring, "time", SimpleNamespace(time=lambda: NOW_MS / 1000))  # the page's clock only

    at = page("model").run()
    at.number_input[0].set_value(2)  # guests
    at.button[0].click().run()
    assert not at.exception
    (shown,) = [m for m in at.metric if m.label.startswith("p(yes)")]
    assert shown.label == f"p(yes) by {version}"
    # The expectation comes from the model object fitted above (not the registry's copy, not the page's code)
    # over an RSVP written out by hand: the page must build the same RSVP from its fields and score it with the
    # persisted, reloaded model.
    scored = model.transform(X.rsvp_features(messages(spark, form_rsvp(guests=2))))
    expected = scored.select(vector_to_array("probability")[1].alias("p")).first()["p"]
    assert shown.value == f"{expected:.3f}"
    other = model.transform(X.rsvp_features(messages(spark, form_rsvp(guests=0))))
    assert other.select(vector_to_array("probability")[1]).first()[0] != expected, "guests move the answer"


def test_the_model_page_loads_the_current_model_in_the_background(spark, lake, monkeypatch):
    version = save_a_real_model(spark)
    monkeypatch.setenv("MEETUP_APP_WARM_UP", "1")
    monkeypatch.setattr(scoring, "_models", {})
    monkeypatch.setattr(scoring, "_warming", threading.Event())
    at = page("model").run()
    assert not at.exception
    (warming,) = [t for t in threading.enumerate() if t.name == "scoring-warm-up"]
    warming.join(timeout=180)
    assert list(scoring._models) == [version]  # the form's first score will not wait for it
