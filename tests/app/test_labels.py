"""What the charts call things: the model's features and the topics' rank moves, in words."""

from __future__ import annotations

import pytest

from app.labels import feature_label, move, move_label
from ml.features import NUMERIC_FEATURES


@pytest.mark.parametrize(
    ("slot", "words"),
    [
        ("country_vector_ar", "country = ar"),
        ("topic=hiking", "topic = hiking"),
        ("lead_log_hours", "hours until the event (log)"),
        ("group_yes_rate", "group: yes rate so far"),
        ("event_log_answers", "event: earlier answers (log)"),
        ("member_no_seen", "member: a no before"),
    ],
)
def test_a_feature_slot_reads_as_words(slot, words):
    assert feature_label(slot) == words


def test_every_numeric_feature_of_the_model_has_words():
    assert all("_" not in feature_label(name) for name in NUMERIC_FEATURES)


@pytest.mark.parametrize(
    ("change", "kind", "label"),
    [(3, "climbed", "▲ 3"), (-2, "fell", "▼ 2"), (0, "held its rank", "="), (None, "new this hour", "new")],
)
def test_a_rank_change_reads_as_a_move(change, kind, label):
    assert (move(change), move_label(change)) == (kind, label)
