"""What every page shares: settings, the lakehouse reader, and empty states that say what to run."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app.as_of import AsOf, as_of_now
from app.reader import Lakehouse, NoData, ServiceDown
from common.settings import Settings, SettingsError, load_settings

T = TypeVar("T")
REFRESH = "5s"
SNAPSHOT_REFRESH = "30s"  # pages drawn from the snapshot tables (rebuilt every few minutes: pipelines/cadence.py)
# Maps draw from the country outlines the app serves itself (app/static/topojson, Natural Earth 1:110m), not
# from plotly.js's CDN: offline, a map with the default would be an empty frame under its colour bar.
# Streamlit serves app/static/ at /app/static/ (meetup-app turns static serving on).
OFFLINE_MAPS = {"topojsonURL": "/app/static/topojson/"}


def whole_world(fig: go.Figure) -> None:
    """The whole world, land and borders drawn: plotly express zooms a map to its data's bounding box, which
    for countries on both sides of the Pacific centres the map on the ocean."""
    fig.update_geos(fitbounds=False, projection_type="natural earth", showland=True, landcolor="#F3F3F3",
                    showcountries=True, countrycolor="#BDBDBD", showframe=False)  # fmt: skip
    fig.update_layout(margin={"l": 0, "r": 0, "b": 0})


def axis_cap(values: pd.Series, *, quantile: float = 0.9, factor: float = 3.0) -> float | None:
    """A y-axis top for a line whose few highest points would flatten the rest, or None to show it all.

    When the largest value is more than `factor` x the `quantile` of the values (a handful of catch-up
    batches after a start or an outage), the axis stops at twice that quantile; a lag that has really grown
    moves the quantile up with it, and is then drawn whole."""
    values = values.dropna()
    if len(values) < 10:
        return None
    typical = float(values.quantile(quantile))
    if typical <= 0 or float(values.max()) <= factor * typical:
        return None
    return 2 * typical


def settings() -> Settings:
    """Read on every run (cheap): the environment wins, as for every other command."""
    return load_settings()


def lake() -> Lakehouse:
    try:
        return Lakehouse(settings())
    except SettingsError as error:
        st.error(f"Settings: {error}")
        st.stop()


def load(read: Callable[[], T]) -> T | None:
    """Run a read; on NoData or ServiceDown show the plain empty state and return None."""
    try:
        return read()
    except NoData as error:
        st.info(f"No data yet: {error}")
    except ServiceDown as error:
        st.warning(f"Service down: {error}. Start the local stack with `make stack-up`.")
    return None


AS_OF_BOX = {"fresh": st.success, "behind": st.warning, "stalled": st.error}


def show_as_of(lh: Lakehouse) -> None:
    """How far behind Kafka the gold tables are, in words and colour (green fresh, amber behind, red stalled)."""
    try:
        status = as_of_now(lh)
    except ServiceDown as error:
        status = AsOf("stalled", f"Service down: {error}")
    AS_OF_BOX[status.level](status.text, icon=":material/schedule:")


def label_every_bar(fig: go.Figure, bars: int) -> None:
    """A horizontal bar chart whose every bar has its name: the height grows with the bars (plotly.js drops
    every other label when they do not fit), names stay text even when they look like numbers (group ids
    would become a numeric axis of thin bars), and the first bar is on top."""
    fig.update_layout(height=max(320, 110 + 28 * bars))
    fig.update_yaxes(type="category", autorange="reversed", automargin=True, title=None)


def link(page: str, label: str, icon: str | None = None, **query: str) -> None:
    """A link to one of the app's pages (views/<name>.py) with query parameters. A page run on its own, as
    AppTest runs one, has no navigation: there it is a plain link to the same address."""
    from urllib.parse import urlencode

    from streamlit.errors import StreamlitPageNotFoundError

    try:
        st.page_link(f"views/{page}.py", label=label, icon=icon, query_params=query or None)
    except StreamlitPageNotFoundError:
        st.markdown(f"[{label}](/{page}{'?' + urlencode(query) if query else ''})")


def link_to_live() -> None:
    link("live", "Open the Live page", icon=":material/bolt:")
