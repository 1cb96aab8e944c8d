"""Headless Chromium for the tests: the flags this machine needs (no sandbox as root, no network
calls at start), and a check that every text of an SVG figure fits it without overlapping."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(*args, url: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--user-data-dir=" + str(url.parent / ".chromium"),
            "--virtual-time-budget=15000",
            *args,
            url.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


# In the page: every non-empty <text> must lie inside the SVG's box, must not be a label Vega cut
# short (an ellipsis), and must not overlap another text by more than 2 px in both directions.
_FIT_SCRIPT = """
const svg = document.querySelector('svg');
const box = svg.getBoundingClientRect();
const texts = [...svg.querySelectorAll('text')].filter(t => t.textContent.trim());
const problems = [];
const rects = texts.map(t => t.getBoundingClientRect());
texts.forEach((t, i) => {
  const r = rects[i], label = t.textContent.trim();
  if (r.left < box.left - 1 || r.right > box.right + 1 || r.top < box.top - 1 || r.bottom > box.bottom + 1)
    problems.push('outside the figure: ' + label);
  if (label.includes('\\u2026')) problems.push('cut short: ' + label);
  for (let j = i + 1; j < texts.length; j++) {
    const o = rects[j];
    const w = Math.min(r.right, o.right) - Math.max(r.left, o.left);
    const h = Math.min(r.bottom, o.bottom) - Math.max(r.top, o.top);
    if (w > 2 && h > 2) problems.push('overlap: ' + label + ' / ' + texts[j].textContent.trim());
  }
});
document.body.setAttribute('data-problems', JSON.stringify(problems));
"""


def text_problems(svg_file: Path, work: Path) -> list[str]:
    """What does not fit in an SVG figure as Chromium lays it out (empty: everything fits)."""
    page = work / f"{svg_file.stem}-fit.html"
    page.write_text(
        "<!doctype html><html><body style='margin:0'>"
        + Path(svg_file).read_text()
        + f"<script>{_FIT_SCRIPT}</script></body></html>"
    )
    dom = chromium("--dump-dom", url=page).stdout
    m = re.search(r'data-problems="([^"]*)"', dom)
    assert m, f"Chromium did not run the check on {svg_file}: {dom[:300]}"
    return json.loads(html.unescape(m.group(1)))
