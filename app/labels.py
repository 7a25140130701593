"""How the pages say things a person reads: rank changes, the model's features, countries."""

from __future__ import annotations

import pandas as pd

# ---- rank changes, as a person reads them ------------------------------------------------------------

MOVES = {"climbed": "#2E7D32", "held its rank": "#9E9E9E", "fell": "#C62828", "new this hour": "#1565C0"}


def move(rank_change: float | None) -> str:
    """A rank change (previous rank - rank; null when unranked the hour before) as one of MOVES."""
    if rank_change is None or pd.isna(rank_change):
        return "new this hour"
    return "climbed" if rank_change > 0 else "fell" if rank_change < 0 else "held its rank"


def move_label(rank_change: float | None) -> str:
    """`▲ 3`, `▼ 2`, `=`, `new`: the change beside a bar."""
    if rank_change is None or pd.isna(rank_change):
        return "new"
    return f"▲ {int(rank_change)}" if rank_change > 0 else f"▼ {-int(rank_change)}" if rank_change < 0 else "="


# ---- the model's features, as a person reads them ------------------------------------------------------

FEATURE_WORDS = {
    "guests": "guests brought",
    "has_guests": "brings guests",
    "lead_log_hours": "hours until the event (log)",
    "lead_unknown": "event time unknown",
    "lead_past": "event already started",
    "local_hour_sin": "local hour (sine)",
    "local_hour_cos": "local hour (cosine)",
    "local_weekend": "on a weekend, local time",
    "online": "online event",
    "topic_count": "group's number of topics",
    "member_photo": "member has a photo",
    "member_services": "member's linked services",
    "event_weekend": "event on a weekend, local time",
    "event_hour_sin": "event's local hour (sine)",
    "event_hour_cos": "event's local hour (cosine)",
    "venue_log_km": "venue's distance from the group (log km)",
    "venue_km_unknown": "venue's distance unknown",
}
STAT_WORDS = {"log_answers": "earlier answers (log)", "yes_rate": "yes rate so far", "no_seen": "a no before"}


def feature_label(name: str) -> str:
    """`country_vector_ar` -> `country = ar`, `topic=hiking` -> `topic = hiking`, `member_yes_rate` -> `member: yes
    rate so far`: the names the model's pipeline gives its vector slots, in words."""
    if name.startswith("country_vector_"):
        return f"country = {name[len('country_vector_') :]}"
    if name.startswith("topic="):
        return f"topic = {name[len('topic=') :]}"
    if name.startswith("word="):
        return f"name has the word {name[len('word=') :]}"
    if name in FEATURE_WORDS:
        return FEATURE_WORDS[name]
    entity, _, stat = name.partition("_")
    if stat in STAT_WORDS:
        return f"{entity}: {STAT_WORDS[stat]}"
    return name.replace("_", " ")


def iso3(alpha_2: str | None) -> str | None:
    """Plotly's world map wants ISO 3166 alpha-3 codes; the stream has lower-case alpha-2."""
    import pycountry

    country = pycountry.countries.get(alpha_2=(alpha_2 or "").upper()) if alpha_2 else None
    return country.alpha_3 if country else None
