"""What every page shares: settings, the lakehouse reader, and empty states that say what to run."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import streamlit as st

from app.data import Lakehouse, NoData, ServiceDown
from common.settings import Settings, SettingsError, load_settings

T = TypeVar("T")
REFRESH = "5s"


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
