"""Altair charts, saved offline: PNG through vl-convert, HTML with Vega inlined."""

from __future__ import annotations

from pathlib import Path

import altair as alt
import pandas as pd

from kit.core import atomic
from kit.stats.categories import BLOG_ORDER

COLORS = {
    "Convolution": "#4C78A8",
    "GEMM": "#F58518",
    "Data Movement": "#E45756",
    "Elementwise": "#72B7B2",
    "Other": "#9D9D9D",
}


def category_color(legend: alt.Legend | None = None) -> alt.Color:
    """The blog's five categories in the same colours in every chart."""
    return alt.Color(
        "category:N",
        scale=alt.Scale(domain=list(BLOG_ORDER), range=[COLORS[c] for c in BLOG_ORDER]),
        sort=list(BLOG_ORDER),
        **({"legend": legend} if legend is not None else {}),
    )


def category_bars(
    df: pd.DataFrame, title: str, value: str = "median_ms", axis_title: str = "median ms per inference"
) -> alt.Chart:
    """Stacked category breakdown; df has columns label, category and `value` (median_ms, or
    est_cycles for counted emulated runs, with its own axis title)."""
    return (
        alt.Chart(df, title=title)
        .mark_bar()
        .encode(
            y=alt.Y("label:N", title=None),
            x=alt.X(f"{value}:Q", title=axis_title),
            color=category_color(),
            order=alt.Order("order:Q"),
            tooltip=["label", "category", alt.Tooltip(f"{value}:Q", format=",.3~f")],
        )
        .transform_calculate(order="indexof(" + str(list(BLOG_ORDER)) + ", datum.category)")
        .properties(width=520)
    )


def save_png(chart: alt.Chart, path: Path, scale: float = 2.0) -> Path:
    import vl_convert as vlc

    return atomic.write_bytes(Path(path), vlc.vegalite_to_png(chart.to_json(), scale=scale))


def save_image(chart: alt.Chart, path: Path) -> Path:
    """PNG or SVG by the file's suffix (SVG: a fraction of the size, sharp at any zoom)."""
    import vl_convert as vlc

    if Path(path).suffix == ".svg":
        return atomic.write_text(Path(path), vlc.vegalite_to_svg(chart.to_json()))
    return save_png(chart, path)
