"""Regions: RSVPs by country on a map, by city in a table, with filters."""

from __future__ import annotations

import plotly.express as px
import streamlit as st

from app import labels, queries
from app.ui import OFFLINE_MAPS, lake, load, whole_world

st.title("Regions")
lh = lake()
countries = load(lambda: queries.regions(lh, "country"))
if countries is not None:
    measure = st.radio("Measure", ["yes", "no", "guests"], horizontal=True, key="regions_measure")
    shown = countries.assign(iso2=countries["country"].str.upper())
    shown["iso3"] = shown["country"].map(labels.iso3)
    chart = px.choropleth(shown.dropna(subset=["iso3"]), locations="iso3", color=measure, hover_name="iso2",
                          title=f"{measure} by group country", color_continuous_scale="Blues",
                          range_color=(0, max(1, int(shown[measure].max()))))  # fmt: skip
    whole_world(chart)
    st.plotly_chart(chart, key="regions_map", config=OFFLINE_MAPS)
    points = load(lambda: queries.city_points(lh))
    if points is not None and len(points):
        shown_points = points[points[measure] > 0]
        chart = px.scatter_geo(shown_points, lat="lat", lon="lon", size=measure, hover_name="city",
                               hover_data={"country": True, measure: True, "lat": False, "lon": False},
                               title=f"{measure} by city (groups' places)", size_max=30)  # fmt: skip
        whole_world(chart)
        st.plotly_chart(chart, key="cities_map", config=OFFLINE_MAPS)
    cities = load(lambda: queries.regions(lh, "city"))
    if cities is not None:
        chosen = st.multiselect("Countries", sorted(cities["country"].dropna().unique()), key="regions_countries")
        if chosen:
            cities = cities[cities["country"].isin(chosen)]
        st.dataframe(cities.sort_values(measure, ascending=False), hide_index=True)
