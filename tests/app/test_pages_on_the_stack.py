"""The scoring form with a real MLlib model persisted in the (local) lakehouse and a real Spark.
(The query page against the real mirror: tests/integration/test_app_query.py.)"""

from __future__ import annotations

import threading

import pytest
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


def save_a_real_model(spark) -> str:
    """A real MLlib model (fitted on a few synthetic RSVPs) saved and promoted in this lakehouse."""
    entries = [
        rsvp(i, member=i % 7, guests=i % 3, mtime=T0 + i, response="no" if i % 4 == 0 else "yes") for i in range(1, 61)
    ]
    features = X.rsvp_features(messages(spark, *entries))
    labelled = features.withColumn("label", (F.col("first_response") == "yes").cast("double"))
    model = M.build_pipeline(M.classifier("logistic_regression")).fit(labelled)
    return Registry(load_settings()).save(model, model_record())


def test_the_scoring_form_returns_a_probability_from_the_persisted_model(spark, lake):
    version = save_a_real_model(spark)

    at = page("model").run()
    at.number_input[0].set_value(2)  # guests
    at.button[0].click().run()
    assert not at.exception
    (shown,) = [m for m in at.metric if m.label.startswith("p(yes)")]
    assert shown.label == f"p(yes) by {version}" and 0.0 <= float(shown.value) <= 1.0
    # what the page shows is what the persisted model gives for the form's default fields and 2 guests
    _, direct = scoring.score_one(
        load_settings(), guests=2, lead_hours=48.0, country="us", online=False, topics=["hiking", "outdoors"],
        member_yes=0, member_no=0,
    )  # fmt: skip
    assert shown.value == f"{direct:.3f}"


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
