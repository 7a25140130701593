"""Categories and topics: which kinds of meetup are popular, and which are climbing."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from app import labels, queries
from app.ui import SNAPSHOT_REFRESH, label_every_bar, lake, load


def hour_label(hour: object) -> str:
    return f"{pd.Timestamp(hour):%Y-%m-%d %H:00}"


st.title("Categories and topics")


@st.fragment(run_every=SNAPSHOT_REFRESH)  # a page opened before the first snapshot fills in by itself
def categories_and_topics() -> None:
    lh = lake()
    st.subheader("Categories (derived from group topics)")
    categories = load(lambda: queries.category_trends(lh))
    if categories is not None:
        by_hour = categories.sort_values("hour")
        if by_hour["hour"].nunique() > 1:
            chart = px.line(by_hour, x="hour", y="yes", color="category", markers=True,
                            title="yes RSVPs per category per hour (stream time)")  # fmt: skip
            chart.update_xaxes(title=None)
        else:  # one hour of data: bars, not dots on an axis a millisecond wide
            latest = by_hour.sort_values("yes", ascending=False)
            title = f"yes RSVPs per category, hour of {hour_label(by_hour['hour'].iloc[0])} (stream time)"
            chart = px.bar(latest, x="yes", y="category", orientation="h", text="yes", title=title)
            label_every_bar(chart, len(latest))
        st.plotly_chart(chart, key="categories_chart")
        latest = categories[categories["hour"] == categories["hour"].max()].sort_values("rank")
        st.dataframe(latest[["rank", "category", "yes", "no", "rank_change"]], hide_index=True)
    st.subheader("Topics")
    topics = load(lambda: queries.topic_trends(lh))
    if topics is not None:
        hours = sorted(topics["hour"].unique(), reverse=True)
        hour = st.selectbox("Hour (stream time)", hours, key="topics_hour", format_func=hour_label)
        top = topics[topics["hour"] == hour].sort_values("rank").head(20).copy()
        top["against the hour before"] = top["rank_change"].map(labels.move)
        top["change"] = top["rank_change"].map(labels.move_label)
        chart = px.bar(top, x="yes", y="topic_name", orientation="h", color="against the hour before",
                       color_discrete_map=labels.MOVES, category_orders={"against the hour before": list(labels.MOVES)},
                       text="change", hover_data=["urlkey", "rank", "previous_rank"], labels={"yes": "yes RSVPs"},
                       title="Top topics of the hour, coloured by their move against the hour before")  # fmt: skip
        label_every_bar(chart, len(top))
        chart.update_layout(legend={"orientation": "h", "y": -0.12 * 20 / max(len(top), 1), "title": None})
        st.plotly_chart(chart, key="topics_chart")


categories_and_topics()
