"""Model: the current version beside its baselines, curves, calibration, importances, live accuracy, and a
form that scores a hand-written RSVP with the persisted MLlib model."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from app import labels, queries, scoring
from app.ui import label_every_bar, lake, load, settings

st.title("Model")
record = load(lambda: queries.model_record(settings()))
if record is not None:
    scoring.warm_up(settings())
    st.caption(
        f"version **{record['version']}** ({record['classifier']}, {record['chosen_by']}), trained "
        f"{record['created_at']} on {record['training_window']['rsvps']:,} RSVPs "
        f"({record['training_window']['from']} to {record['training_window']['to']}); tested on "
        f"{record['test_window']['rsvps']:,} later RSVPs"
    )
    rows = [{"": f"model: {record['classifier']}", **record["metrics"]}]
    rows += [
        {"": f"baseline: {name}" + (f" ({b['rule']})" if b["rule"] else ""), **b}
        for name, b in record["baselines"].items()
    ]
    table = pd.DataFrame(rows)[["", "roc_auc", "pr_auc_no", "log_loss", "brier", "accuracy"]]
    st.dataframe(table, hide_index=True)
    roc, pr, cal = st.columns(3)
    with roc:
        curve = pd.DataFrame(record["metrics"]["roc_curve"])
        fig = px.line(curve, x="fpr", y="tpr", title=f"ROC (AUC {record['metrics']['roc_auc']:.3f})")
        fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line={"dash": "dot"}))
        st.plotly_chart(fig, key="roc_chart")
    with pr:
        curve = pd.DataFrame(record["metrics"]["pr_curve_no"])
        st.plotly_chart(px.line(curve, x="recall", y="precision", title='Precision-recall of "no"'), key="pr_chart")
    with cal:
        bins = pd.DataFrame(record["metrics"]["calibration"])
        fig = px.scatter(bins, x="predicted", y="observed", size="rows", title="Calibration (test)")
        fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect", line={"dash": "dot"}))
        st.plotly_chart(fig, key="calibration_chart")
    weights = pd.DataFrame(record["importances"]).head(15)
    value = [c for c in weights.columns if c != "feature"][0]
    weights["feature"] = weights["feature"].map(labels.feature_label)
    fig = px.bar(weights, x=value, y="feature", orientation="h", title="What the model weighs",
                 labels={value: value.replace("_", " ")})  # fmt: skip
    label_every_bar(fig, len(weights))
    st.plotly_chart(fig, key="importances_chart")

st.subheader("Live accuracy")
accuracy = load(lambda: queries.live_accuracy(lake()))
if accuracy is not None:
    st.dataframe(accuracy, hide_index=True)

st.subheader("Online calibration")
st.caption(
    "The scoring stream shifts the model's log-odds block by block (100 RSVPs) by the answers of the 500 "
    "RSVPs before each block, as they stood when it began, so that p(yes) follows the stream's own yes rate."
)
history = load(lambda: queries.calibration_history(lake()))
if history is not None:
    st.write("In use: " + queries.calibration_in_use(history, record["version"] if record else None))
    fig = px.line(
        queries.with_breaks(history), x="block_start", y="shift", color="model_version", markers=True,
        title="Shift of the log-odds per block", labels={"block_start": "block began", "shift": "shift (log-odds)",
                                                          "model_version": "model"},
        hover_data=["block", "answers", "yes_rate"],
    )  # fmt: skip
    st.plotly_chart(fig, key="calibration_history_chart")

st.subheader("Score an RSVP")
with st.form("score_form"):
    left, right = st.columns(2)
    guests = left.number_input("Guests", 0, 50, 0)
    lead_hours = left.number_input("Hours until the event", -24.0, 2000.0, 48.0)
    country = left.text_input("Group country (ISO-2)", "us")
    online = left.checkbox("Online event (no venue)")
    topics = right.text_input("Group topics (urlkeys, comma separated)", "hiking,outdoors")
    event_name = right.text_input("Event name", "Saturday hike and happy hour")
    member_yes = right.number_input("Member's earlier yes RSVPs", 0, 1000, 0)
    member_no = right.number_input("Member's earlier no RSVPs", 0, 1000, 0)
    submitted = st.form_submit_button("Score")
if submitted:
    if record is None:
        st.info("No model yet: run `make train` once the chain has data.")
    else:
        with st.spinner("Scoring with the MLlib model (a local Spark, started when this page first opened)…"):
            version, probability = scoring.score_one(
                settings(),
                guests=int(guests), lead_hours=float(lead_hours), country=country.strip().lower() or None,
                online=online, topics=[t.strip() for t in topics.split(",") if t.strip()],
                member_yes=int(member_yes), member_no=int(member_no), event_name=event_name.strip(),
            )  # fmt: skip
        st.metric(f"p(yes) by {version}", f"{probability:.3f}")
