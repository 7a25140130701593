"""Pipeline health: freshness, rates, batch durations, Kafka lag, quarantine counts and recent reasons."""

from __future__ import annotations

import plotly.express as px
import streamlit as st

from app import data
from app.ui import REFRESH, lake, load

st.title("Pipeline health")


@st.fragment(run_every=REFRESH)
def health() -> None:
    lh = lake()
    fresh = load(lambda: data.freshness(lh))
    if fresh is not None:
        fig = px.line(fresh, x="visible_at", y="p95_ms", color="stage", markers=True,
                      title="Freshness: Kafka append -> visible, p95 per batch (ms)")  # fmt: skip
        st.plotly_chart(fig, key="freshness_chart")
    metrics = load(lambda: data.pipeline_metrics(lh))
    if metrics is not None:
        left, right = st.columns(2)
        left.plotly_chart(px.line(metrics, x="batch_started", y="processed_rows_per_s", color="query",
                                  title="Processed rows per second"), key="rates_chart")  # fmt: skip
        right.plotly_chart(px.line(metrics, x="batch_started", y="batch_ms", color="query",
                                   title="Batch duration (ms)"), key="durations_chart")  # fmt: skip
        lag = metrics.dropna(subset=["kafka_offsets_behind_max"])
        if not lag.empty:
            st.plotly_chart(px.line(lag, x="batch_started", y="kafka_offsets_behind_max", color="query",
                                    title="Kafka offsets behind latest"), key="lag_chart")  # fmt: skip
    st.subheader("Quarantine")
    found = load(lambda: data.quarantine(lh))
    if found is not None:
        counts, recent = found
        st.dataframe(counts, hide_index=True)
        st.dataframe(recent, hide_index=True)


health()
