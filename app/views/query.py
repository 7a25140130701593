"""Query: read-only SQL against the PostgreSQL mirror of silver."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app.readonly_sql import EXAMPLES, ROW_LIMIT, TIMEOUT_MS, QueryError, run_readonly
from app.ui import settings

st.title("Query the PostgreSQL mirror")
st.caption(
    f"Read-only, as `{settings().postgres.reader_user}`, in a read-only transaction; at most {ROW_LIMIT:,} rows, "
    f"{TIMEOUT_MS / 1000:.0f} s per statement. Tables: rsvps, events, venues, members, member_services, groups, "
    "topics, group_topics."
)
example = st.selectbox("Examples", list(EXAMPLES), key="query_example")
query = st.text_area("SQL", EXAMPLES[example], height=160, key=f"query_text_{example}")
if st.button("Run", key="query_run"):
    try:
        result = run_readonly(settings(), query)
    except QueryError as error:
        st.error(str(error))
    else:
        st.dataframe(pd.DataFrame(result.rows, columns=result.columns), hide_index=True)
        st.caption(f"{len(result.rows):,} rows" + (f" (cut at {ROW_LIMIT:,})" if result.truncated else ""))
