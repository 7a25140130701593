"""Categories and topics: which kinds of meetup are popular, and which are climbing."""

from __future__ import annotations

import plotly.express as px
import streamlit as st

from app import data
from app.ui import lake, load

st.title("Categories and topics")
lh = lake()
st.subheader("Categories (derived from group topics)")
categories = load(lambda: data.category_trends(lh))
if categories is not None:
    chart = px.line(categories.sort_values("hour"), x="hour", y="yes", color="category", markers=True,
                    title="yes RSVPs per category per hour")  # fmt: skip
    st.plotly_chart(chart, key="categories_chart")
    latest = categories[categories["hour"] == categories["hour"].max()].sort_values("rank")
    st.dataframe(latest[["rank", "category", "yes", "no", "rank_change"]], hide_index=True)
st.subheader("Topics")
topics = load(lambda: data.topic_trends(lh))
if topics is not None:
    hours = sorted(topics["hour"].unique(), reverse=True)
    hour = st.selectbox("Hour (stream time)", hours, key="topics_hour")
    top = topics[topics["hour"] == hour].sort_values("rank").head(20)
    chart = px.bar(top, x="yes", y="topic_name", orientation="h", color="rank_change",
                   title="Top topics of the hour (colour: rank change against the hour before)")  # fmt: skip
    chart.update_yaxes(autorange="reversed")
    st.plotly_chart(chart, key="topics_chart")
