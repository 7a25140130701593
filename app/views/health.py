"""Pipeline health: freshness, rates, batch durations, Kafka lag, quarantine counts and recent reasons."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from app import queries
from app.ui import REFRESH, axis_cap, lake, link_to_live, load, show_as_of
from pipelines.cadence import HOT_STAGES, SLOW_INTERVAL_WORDS, SLOW_STAGES

st.title("Pipeline health")
WINDOWS = {"15 minutes": pd.Timedelta(minutes=15), "1 hour": pd.Timedelta(hours=1), "6 hours": pd.Timedelta(hours=6),
           "1 day": pd.Timedelta(days=1), "7 days": pd.Timedelta(days=7)}  # fmt: skip
window = st.selectbox("Batches up to the newest, over the last", list(WINDOWS), index=1, key="health_window")


def freshness_chart(rows: pd.DataFrame, title: str, key: str, typical: float) -> None:
    fig = px.line(rows, x="visible_at", y="p95_s", color="stage", markers=True, title=title,
                  labels={"p95_s": "seconds behind Kafka (p95)", "visible_at": "batch visible at"})  # fmt: skip
    cap = axis_cap(rows["p95_s"], quantile=typical)
    fig.update_yaxes(rangemode="tozero", **({"range": [0, cap]} if cap else {}))
    st.plotly_chart(fig, key=key)
    if cap:  # a few catch-up batches (after a start or an outage) would flatten everything else
        high = rows[rows["p95_s"] > cap]
        st.caption(f"{len(high)} of {len(rows)} batches are above {cap:.0f} s, off the top of the chart "
                   f"(up to {high['p95_s'].max():.0f} s, the newest at {high['visible_at'].max():%H:%M} UTC): "
                   "a catch-up after a start or an outage. Hover the line, or pick a shorter window.")  # fmt: skip


@st.fragment(run_every=REFRESH)
def health() -> None:
    lh = lake()
    show_as_of(lh)
    link_to_live()
    fresh = load(lambda: queries.freshness(lh, WINDOWS[window]))
    if fresh is not None:
        fresh = fresh.assign(p95_s=fresh["p95_ms"] / 1000)  # tens of seconds read better than 40,000 ms
        # each path on its own chart: the slow path's minutes would flatten the hot path's seconds
        # The slow path has a batch every 2 minutes, so the catch-up after a start is more than a tenth of its
        # batches for the first half hour: its axis is set by the batches' upper quartile, not the 90th percentile.
        for stages, title, key, typical in (
            (HOT_STAGES, "Freshness of the hot path: Kafka append -> visible, p95 per batch", "freshness_chart", 0.9),
            (SLOW_STAGES, f"Freshness of the slow path ({SLOW_INTERVAL_WORDS}): Kafka append -> visible, p95 per "
             "batch", "slow_freshness_chart", 0.75),
        ):  # fmt: skip
            rows = fresh[fresh["stage"].isin(stages)]
            if not rows.empty:
                freshness_chart(rows, title, key, typical)
    metrics = load(lambda: queries.pipeline_metrics(lh, WINDOWS[window]))
    if metrics is not None:
        left, right = st.columns(2)
        left.plotly_chart(px.line(metrics, x="batch_started", y="processed_rows_per_s", color="query",
                                  title="Processed rows per second",
                                  labels={"processed_rows_per_s": "rows per second",
                                          "batch_started": "batch started"}), key="rates_chart")  # fmt: skip
        right.plotly_chart(px.line(metrics.assign(batch_s=metrics["batch_ms"] / 1000), x="batch_started",
                                   y="batch_s", color="query", title="Batch duration",
                                   labels={"batch_s": "seconds", "batch_started": "batch started"}),
                           key="durations_chart")  # fmt: skip
        lag = metrics.dropna(subset=["kafka_offsets_behind_max"])
        if not lag.empty:
            fig = px.line(lag, x="batch_started", y="kafka_offsets_behind_max", color="query",
                          title="Kafka offsets behind latest",
                          labels={"kafka_offsets_behind_max": "offsets behind (max of partitions)",
                                  "batch_started": "batch started"})  # fmt: skip
            # a lag is never negative: a chain that keeps up draws a line on the floor, not mid-chart at 0
            fig.update_yaxes(rangemode="tozero")
            st.plotly_chart(fig, key="lag_chart")
    phases = load(lambda: queries.batch_phases(lh, WINDOWS[window]))
    if phases is not None:
        fig = px.bar(phases, x="seconds", y="query", color="phase", orientation="h",
                     title="Where a batch's time goes: mean seconds per batch, by phase",
                     labels={"seconds": "seconds per batch (mean)", "query": ""},
                     hover_data={"batches": True},
                     # a colour per phase: the default ten repeat once silver, gold and Spark's phases are drawn
                     color_discrete_sequence=px.colors.qualitative.Alphabet)  # fmt: skip
        # the legend below the bars, all of it visible (at the side it is cut off and scrolls)
        fig.update_layout(barmode="stack", legend_title_text="phase (spark: = the engine's own)", height=520,
                          legend={"orientation": "h", "yanchor": "top", "y": -0.25, "x": 0})  # fmt: skip
        st.plotly_chart(fig, key="phases_chart")
    st.subheader("Quarantine")
    found = load(lambda: queries.quarantine(lh))
    if found is not None:
        counts, recent = found
        st.dataframe(counts, hide_index=True)
        st.dataframe(recent, hide_index=True)


health()
