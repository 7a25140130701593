"""The catalogue is the only way to name a table: entries give paths, undeclared names are refused."""

from __future__ import annotations

import pytest

from common.settings import STREAMS
from lakehouse import catalogue
from lakehouse.layout import Layout
from lakehouse.schemas import TABLE_KEYS


def test_a_table_path_comes_from_its_entry():
    layout = Layout("s3a://bucket/lake", "g2")
    assert layout.table(catalogue.SILVER_RSVPS) == "s3a://bucket/lake/g2/silver/rsvps"
    assert layout.table(catalogue.GOLD_FRESHNESS) == "s3a://bucket/lake/g2/gold/freshness"
    assert layout.table(catalogue.bronze("photos")) == "s3a://bucket/lake/g2/bronze/photos"


def test_a_name_the_catalogue_does_not_declare_is_refused_with_the_declared_names():
    with pytest.raises(catalogue.UnknownTable, match=r"no silver table 'rsvp' in the catalogue; declared: rsvps, "):
        catalogue.table("silver", "rsvp")
    with pytest.raises(catalogue.UnknownTable, match="no gold table 'freshnes'"):
        catalogue.gold("freshnes")


def test_every_stream_and_3nf_table_is_declared_once():
    pairs = [(t.layer, t.name) for t in catalogue.TABLES]
    assert len(pairs) == len(set(pairs))
    assert catalogue.names("bronze") == list(STREAMS)
    assert set(TABLE_KEYS) <= set(catalogue.names("silver"))
    assert all(catalogue.silver(name).keys == keys for name, keys in TABLE_KEYS.items())


def test_snapshots_are_a_kind_of_table_not_a_prefix():
    snapshots = {t.name for t in catalogue.TABLES if t.snapshot}
    assert snapshots == {"topic_trends", "top_groups_5min", "upcoming_events", "category_trends"}
    assert all(t.layer == "gold" for t in catalogue.TABLES if t.snapshot)
