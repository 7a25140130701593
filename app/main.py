"""The meetup-rsvps app: `meetup-app` (or `make app`) serves it on http://127.0.0.1:8501."""

from __future__ import annotations

import streamlit as st

from app.auth import login_required
from app.ui import settings

PAGES = [
    st.Page("views/live.py", title="Live", icon=":material/bolt:", default=True),
    st.Page("views/regions.py", title="Regions", icon=":material/public:"),
    st.Page("views/categories.py", title="Categories and topics", icon=":material/category:"),
    st.Page("views/events.py", title="Events and groups", icon=":material/event:"),
    st.Page("views/model.py", title="Model", icon=":material/model_training:"),
    st.Page("views/health.py", title="Pipeline health", icon=":material/monitor_heart:"),
    st.Page("views/query.py", title="Query", icon=":material/database:"),
]

# An emoji favicon for every page: a page's material icon would become a favicon fetched from Google's font
# CDN (Streamlit does that), and nothing of the app's may leave the machine.
st.set_page_config(page_title="meetup-rsvps", page_icon="📊", layout="wide")
if login_required(settings()):  # shared off loopback (meetup-app --address ...): nothing before the identity provider
    if not st.user.is_logged_in:
        st.title("meetup-rsvps")
        st.write("This app is shared: log in to see the stream.")
        st.button("Log in", on_click=st.login, type="primary")
        st.stop()
    st.sidebar.caption(f"Logged in as {st.user.get('email') or st.user.get('name') or 'you'}")
    st.sidebar.button("Log out", on_click=st.logout)
page = st.navigation(PAGES)
st.set_page_config(page_icon="📊")  # after the navigation, which sets the page's own icon as the favicon
page.run()
