"""The report's text as Markdown and HTML: one way to print numbers and shares, tables, escaping
of values (data, never markup), and the self-contained page with its charts."""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import json
import re

import altair as alt
import pandas as pd

from kit.core import atomic, environment
from kit.core.errors import Sme2Error


def percent_column(df: pd.DataFrame) -> pd.DataFrame:
    """share_of_execute (a fraction) as "% of execute", the way every table of the report shows shares."""
    return df.assign(**{"% of execute": 100 * df.share_of_execute}).drop(columns="share_of_execute")


def number(value: float, percent: bool = False) -> str:
    """One way to print a number in the report: percentages with one decimal; times and other
    values with enough digits to tell a small one from zero (0.0004, not 0.000)."""
    if value != value:
        return "-"
    if percent:
        return f"{value:.1f}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 1 or value == 0:
        return f"{value:.3f}"
    return f"{value:.3g}" if abs(value) >= 1e-4 else f"{value:.2e}"


def md_table(df: pd.DataFrame) -> str:
    if df.empty:
        return "_none_"
    out = df.copy()
    for col in out.columns:
        if pd.api.types.is_float_dtype(out[col]):
            percent = "%" in str(col) or "pct" in str(col)
            out[col] = [number(v, percent) for v in out[col]]
    return out.to_markdown(index=False, disable_numparse=True)


_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)


def escape_markdown(text: str) -> str:
    """Markdown whose values cannot become HTML: every `<` outside code spans is written `&lt;`
    (inside a code span it is shown as typed and never parsed). Markdown's own `>` (quotes) stays."""
    out, last = [], 0
    for m in _CODE_SPAN.finditer(text):
        out.append(text[last : m.start()].replace("<", "&lt;"))
        out.append(m.group(0))
        last = m.end()
    out.append(text[last:].replace("<", "&lt;"))
    return "".join(out)


def script_json(obj) -> str:
    """JSON for inside a <script> element: no string in it can close the element or open a comment
    (`<`, `>` and `&` as JSON escapes, which JavaScript reads back as the same characters)."""
    return json.dumps(obj).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


@functools.lru_cache(maxsize=1)
def vega_bundle() -> str:
    """Vega, Vega-Lite and vega-embed as one script (vl-convert's offline bundle). Making it takes
    seconds, and it depends only on the vl-convert version: it is kept in the machine's build cache
    ($SME2_BUILD_CACHE/vega/), best effort."""
    import vl_convert as vlc

    kept = environment.build_cache() / "vega" / f"vl-convert-{vlc.__version__}.json"
    try:
        entry = json.loads(kept.read_text())
        if hashlib.sha256(entry["bundle"].encode()).hexdigest() == entry["sha256"]:
            return entry["bundle"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass  # missing or damaged: made again
    bundle = vlc.javascript_bundle()
    try:
        atomic.write_json(kept, {"sha256": hashlib.sha256(bundle.encode()).hexdigest(), "bundle": bundle})
    except (OSError, Sme2Error):
        pass
    return bundle


def html_document(markdown_text: str, figures: list[tuple[str, alt.Chart]], title: str = "SME2 report") -> str:
    """One page: the report text, then every chart embedded with Vega inlined (no network). Its
    Content-Security-Policy allows exactly its own two scripts (by hash; Vega compiles its
    expressions, hence 'unsafe-eval'), no other script, no network, and raw HTML in the text is
    never passed through: a crafted name shows as text."""
    bundle = vega_bundle()
    divs = "\n".join(
        f'<div id="chart-{i}" class="chart" title="{html.escape(name)}"></div>' for i, (name, _) in enumerate(figures)
    )
    embeds = "\n".join(
        f"vegaEmbed('#chart-{i}', {script_json(chart.to_dict())}, {{actions: false, renderer: 'svg'}})"
        ".catch(e => { const p = document.createElement('p'); p.className = 'err'; p.textContent = String(e);"
        " document.body.appendChild(p); });"
        for i, (_, chart) in enumerate(figures)
    )
    try:
        import markdown as md_lib  # optional: nicer HTML when available

        converter = md_lib.Markdown(extensions=["tables"])
        converter.preprocessors.deregister("html_block")  # raw HTML is text, never markup
        converter.inlinePatterns.deregister("html")
        body = converter.convert(markdown_text)
    except ImportError:
        body = f"<pre>{html.escape(markdown_text)}</pre>"
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(js.encode()).digest()).decode()}'" for js in (bundle, embeds)
    )
    csp = f"default-src 'none'; script-src {hashes} 'unsafe-eval'; style-src 'unsafe-inline'; img-src data:; font-src data:"
    return f"""<!doctype html><html><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}} table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:2px 6px}} .err{{color:red}} .chart{{margin:1.5em 0}}</style>
<script>{bundle}</script></head><body>{body}<h2>Charts</h2>{divs}<script>{embeds}</script></body></html>"""
