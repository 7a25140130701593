"""Events and groups: find one by name or id, and open it (deep links: ?event_id=..., ?group_id=...)."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from app import queries
from app.ui import lake, link, load

st.title("Events and groups")
lh = lake()
params = st.query_params
# Written back as they are: a link to this same page (event -> its group) changes the parameters but not
# the address bar, and an address that says what is shown is the point of a deep link.
params.from_dict(params.to_dict())
text = st.text_input("Search events and groups by name or id", key="events_search", placeholder="e.g. hiking, 1234")
if text:
    found = load(lambda: queries.search(lh, text))
    if found is not None and found.empty:
        st.info(f"Nothing named or numbered {text!r}.")
    elif found is not None:
        for row in found.itertuples():
            link("events", f"{row.kind}: {row.name} ({row.where})", **{f"{row.kind}_id": row.id})


def show_event(event_id: str) -> None:
    view = load(lambda: queries.event_view(lh, event_id))
    if view is None:
        return
    event, group, venue = view["event"], view["group"], view["venue"]
    st.header(event["event_name"] or f"event {event_id}")
    when = pd.Timestamp(event["time"]).strftime("%Y-%m-%d %H:%M UTC") if pd.notna(event["time"]) else "time unknown"
    where = f"{venue['venue_name']}" if venue else "no venue (online or not given)"
    url = f" · [on Meetup]({event['event_url']})" if event.get("event_url") else ""
    st.write(f"{when} · {where} · event id `{event_id}`{url}")
    if group:
        link("events", f"Group: {group['group_name']} ({group['group_city']})", icon=":material/groups:",
             group_id=str(group["group_id"]))  # fmt: skip
    yes, no = st.columns(2)
    yes.metric("yes", f"{view['totals']['yes']:,}")
    no.metric("no", f"{view['totals']['no']:,}")
    over_time = view["over_time"]
    if len(over_time):
        chart = px.line(over_time, x="minute", y=["yes", "no"], markers=len(over_time) < 30,
                        title="RSVPs over time, cumulative (each RSVP by its newest answer's minute)",
                        labels={"value": "RSVPs", "variable": "answer", "minute": ""})  # fmt: skip
        if over_time["minute"].nunique() == 1:  # one minute: Plotly's own range would be a millisecond wide
            minute = pd.Timestamp(over_time["minute"].iloc[0])
            chart.update_xaxes(range=[minute - pd.Timedelta(minutes=30), minute + pd.Timedelta(minutes=30)])
        st.plotly_chart(chart, key="event_chart")
    scored = view["scored"]
    st.subheader("The model's view of its RSVPs")
    if len(scored):
        st.dataframe(scored.sort_values("rsvp_time")[["rsvp_time", "member_id", "probability_yes", "predicted",
                                                      "answer", "model_version"]], hide_index=True)  # fmt: skip
    else:
        st.info("None of its RSVPs is scored yet (scoring needs a model: make train).")


def show_group(group_id: int) -> None:
    view = load(lambda: queries.group_view(lh, group_id))
    if view is None:
        return
    group = view["group"]
    st.header(group["group_name"])
    st.write(f"{group['group_city']}, {str(group['group_country']).upper()} · group id `{group_id}`")
    if len(view["topics"]):
        st.write("Topics: " + ", ".join(view["topics"]["topic_name"].fillna(view["topics"]["urlkey"])))
    st.subheader(f"Events ({len(view['events'])})")
    events = view["events"]
    if len(events):
        events = events.assign(open=events["event_id"].map(lambda e: f"/events?event_id={e}"))
        st.dataframe(events[["time", "event_name", "yes", "no", "open"]], hide_index=True,
                     column_config={"open": st.column_config.LinkColumn("open", display_text="open")})  # fmt: skip
    st.subheader(f"Members who come back ({len(view['returning'])})")
    st.caption("Members with RSVPs to two or more of its events, by their newest answers.")
    if len(view["returning"]):
        st.dataframe(view["returning"][["member_name", "events", "yes"]], hide_index=True)


if params.get("event_id"):
    show_event(params["event_id"])
elif params.get("group_id"):
    try:
        show_group(int(params["group_id"]))
    except ValueError:
        st.error(f"A group id is a number, not {params['group_id']!r}.")
elif not text:
    st.info("Search above, or open one from a chart: the Live page's top groups link here.")
