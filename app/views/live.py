"""Live: RSVP rate, running yes/no, top groups of the last 5 minutes, the scored feed; refreshes itself."""

from __future__ import annotations

from typing import TYPE_CHECKING

import plotly.express as px
import streamlit as st

from app import queries
from app.ui import REFRESH, label_every_bar, lake, load, show_as_of

if TYPE_CHECKING:
    from streamlit.elements.lib.column_types import ColumnConfig

st.title("Live")
minutes = st.slider("Minutes of stream time on the rate chart", 10, 240, 60, step=10, key="live_minutes")
FEED_COLUMNS: dict[str, str | ColumnConfig] = {
    "scored_at": st.column_config.DatetimeColumn("scored at (UTC)", format="HH:mm:ss"),
    "answer": "answer",
    "probability_yes": st.column_config.ProgressColumn("p(yes)", format="%.2f", min_value=0.0, max_value=1.0),
    "predicted": "predicted",
    "group_name": "group",
    "event_name": "event",
    "country": "country",
    "model_version": "model",
}
feed_rows = st.selectbox("Scored RSVPs in the feed", [20, 50, 100], index=0, key="live_feed_rows")


@st.fragment(run_every=REFRESH)
def live() -> None:
    lh = lake()
    show_as_of(lh)
    totals = load(lambda: queries.totals(lh))
    if totals:
        yes, no, guests = st.columns(3)
        yes.metric("yes", f"{totals['yes']:,}")
        no.metric("no", f"{totals['no']:,}")
        guests.metric("guests (of yes)", f"{totals['guests']:,}")
    rate = load(lambda: queries.rate_per_minute(lh, minutes))
    if rate is not None:
        chart = px.bar(rate, x="minute", y=["yes", "no"], title="RSVPs per minute (stream time)",
                       labels={"value": "RSVPs", "variable": "answer", "minute": ""})  # fmt: skip
        st.plotly_chart(chart, key="rate_chart")
    left, right = st.columns(2)
    with left:
        groups = load(lambda: queries.top_groups(lh))
        if groups is not None:
            top = groups.head(10)
            chart = px.bar(top, x="yes", y="group_name", orientation="h", title="Top groups, last 5 minutes",
                           text="yes", labels={"yes": "yes RSVPs"}, hover_data=["group_id"])  # fmt: skip
            label_every_bar(chart, len(top))
            picked = st.plotly_chart(chart, key="groups_chart", on_select="rerun", selection_mode="points")
            st.caption("Click a bar to open the group.")
            points = picked.selection.points if picked else []
            if points:  # a bar's customdata holds its group id (hover_data)
                st.switch_page("views/events.py", query_params={"group_id": str(points[0]["customdata"][0])})
    with right:
        if totals:
            pie = px.pie(names=["yes", "no"], values=[totals["yes"], totals["no"]], title="Running yes / no")
            st.plotly_chart(pie, key="totals_chart")
    st.subheader("Scored RSVPs")
    feed = load(lambda: queries.scored_feed(lh, feed_rows))
    if feed is not None:
        # what a person reads first (the answer beside the model's guess) before the long names, which
        # otherwise pushed p(yes) off the right edge of the table
        st.dataframe(
            feed[list(FEED_COLUMNS)], hide_index=True, column_config=FEED_COLUMNS,
        )  # fmt: skip


live()
