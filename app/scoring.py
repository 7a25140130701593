"""The model page's form: one hand-written RSVP scored by the persisted MLlib PipelineModel.

The app's only use of Spark: a local session (one core), and the model version CURRENT names, loaded once
per version. The model page starts both in the background on its first visit (`warm_up`), so the form
answers in about a second instead of waiting for a JVM. The form's fields become a message like the stream's,
through the same feature code as training and the chain; the member's history comes from the form.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from common.settings import Settings

if TYPE_CHECKING:
    from pyspark.ml import PipelineModel
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

_lock = threading.Lock()
_spark: SparkSession | None = None
_models: dict[str, PipelineModel] = {}
_warming = threading.Event()


def _session(settings: Settings) -> SparkSession:
    global _spark
    if _spark is None:
        from common.spark import build_spark

        _spark = build_spark(
            settings, "meetup-app-scoring", master="local[1]", extra_conf={"spark.ui.enabled": "false"}
        )
    return _spark


def warm_up(settings: Settings) -> None:
    """Start the session and load the current version in a background thread, once per app process
    (MEETUP_APP_WARM_UP=0 turns it off: the first score then starts them)."""
    if _warming.is_set() or not settings.app_warm_up:
        return
    _warming.set()

    def prepare() -> None:
        from ml.registry import Registry

        try:
            with _lock:
                spark = _session(settings)
                version = Registry(settings).current()
                if version and version not in _models:
                    _models[version] = Registry(settings).load(version)[1]
                spark.range(1).count()  # the first job pays for code generation; not the user's
        except Exception as error:  # the form shows its own error when used; the next visit tries again
            log.warning("scoring warm-up failed: %s", error)
            _warming.clear()

    threading.Thread(target=prepare, name="scoring-warm-up", daemon=True).start()


def message(
    *,
    guests: int,
    lead_hours: float,
    country: str | None,
    online: bool,
    topics: list[str],
    now_ms: int,
    event_name: str = "form",
) -> dict[str, Any]:
    """A stream-shaped RSVP message from the form (group at longitude 0: local time is UTC; the venue, unless
    online, about 1.6 km from the group's centre)."""
    starts = now_ms + int(lead_hours * 3_600_000)
    msg: dict[str, Any] = {
        "rsvp_id": 1,
        "mtime": now_ms,
        "response": "yes",  # the label's field: required by validation, never a feature
        "guests": guests,
        "visibility": "public",
        "member": {"member_id": 1, "member_name": "form"},
        "event": {"event_id": "form", "event_name": event_name or "form", "event_url": "-", "time": starts},
        "group": {
            "group_id": 1, "group_name": "form", "group_urlname": "form", "group_city": "-",
            "group_country": country or "us", "group_lat": 0, "group_lon": 0,
            "group_topics": [{"urlkey": t, "topic_name": t} for t in topics],
        },
    }  # fmt: skip
    if not online:
        msg["venue"] = {"venue_id": 1, "venue_name": "venue", "lat": 0.01, "lon": 0.01}
    return msg


def score_one(settings: Settings, *, member_yes: int, member_no: int, **fields: Any) -> tuple[str, float]:
    """(model version, probability of yes) for the form's RSVP."""
    from pyspark.sql import functions as F

    from ml import features as X
    from ml.model import predict
    from ml.registry import Registry

    with _lock:  # one Spark job at a time from this app
        spark = _session(settings)
        registry = Registry(settings)
        version = registry.current_or_fail()  # NoModelError, naming `make train`, before any model
        if version not in _models:
            _models[version] = registry.load(version)[1]
        msg = message(now_ms=int(time.time() * 1000), **fields)
        rows = spark.createDataFrame(
            [(json.dumps(msg), 0, 0, 0)], "value string, partition int, offset long, arrival_ms long"
        )
        features = X.rsvp_features(X.valid_messages(rows))
        features = features.withColumn("member_yes", F.lit(member_yes)).withColumn("member_no", F.lit(member_no))
        features = X.history_features(features)  # the derived history columns again, from the form's counts
        scored = predict(_models[version], features).first()
        assert scored is not None, "one row in, one prediction out"
        return version, float(scored["p_yes"])
