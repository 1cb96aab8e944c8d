"""Every stored value is untrusted input: names read back from the warehouse (or a lab's store)
never choose where anything is written, and no value becomes markup or script in a report.

Rows are crafted the way a hostile lab host or a corrupted file would leave them: written straight
into a real warehouse file over real run folders (the recorded host run, cloned)."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import duckdb
import pytest

from kit.analysis import compare
from kit.core.errors import DataRootError, NameError_, Sme2Error
from kit.core.home import DataRoot
from kit.report import builder, render
from kit.store import views
from kit.store.ingest import ingest_run
from kit.store.warehouse import Warehouse
from tests.browser import CHROMIUM, chromium
from tests.runfolder import clone_run

REPO = Path(__file__).resolve().parent.parent
RECORDED = Path(__file__).resolve().parent / "data" / "tiny_seg-fp32-host"
ESCAPE = "zz/" + "../" * 12 + "tmp/sme2-escape-{}"


def pair(root: DataRoot, **on_fields) -> tuple[str, str]:
    """Two ingested runs of one variant on the host: SME2 off and (labelled) on."""
    off = clone_run(RECORDED, root, "run-off", started_at="2026-12-01T00:00:00Z")
    on = clone_run(
        RECORDED, root, "run-on", started_at="2026-12-01T00:01:00Z", sme2=True, target="host.sme2-on", **on_fields
    )
    for folder in (off, on):
        ingest_run(root, folder)
    return off.name, on.name


def test_a_stored_run_id_cannot_choose_where_comparisons_are_written(tmp_path, caplog):
    root = DataRoot.resolve(tmp_path / "home")
    _, on = pair(root)
    escaped = Path(ESCAPE.format(tmp_path.name).split("/", 1)[1].replace("../", ""))  # /tmp/sme2-escape-...
    crafted = ESCAPE.format(tmp_path.name)
    with duckdb.connect(str(root.warehouse)) as conn:  # what a hostile store row looks like
        for table in ("runs", "latency_samples", "op_stats", "category_stats", "kernels"):
            conn.execute(f"UPDATE {table} SET run_id = ? WHERE run_id = ?", [crafted, on])
    wh = Warehouse.at(root)
    with caplog.at_level(logging.WARNING, logger="sme2"):
        with pytest.raises(Sme2Error):
            c = compare.compare(wh, "tiny_seg-fp32", "host")
            from kit.report import comparison

            comparison.write(root, c)
    assert not Path("/" + str(escaped)).exists() and not list(Path("/tmp").glob(f"sme2-escape-{tmp_path.name}*"))
    assert any("invalid run_id" in r.getMessage() and crafted in r.getMessage() for r in caplog.records)
    assert views.find_runs(wh, {"variant": "tiny_seg-fp32"}).run_id.tolist() == ["run-off"]  # skipped, not used
    row = wh.query("SELECT * FROM runs WHERE run_id = ?", [crafted]).iloc[0]
    with pytest.raises(NameError_, match="invalid name"):
        compare.Side.of(row)


def test_the_data_root_refuses_paths_that_leave_it(tmp_path):
    root = DataRoot.resolve(tmp_path / "home")
    for parts in (("..", "x"), ("tiny_seg-fp32", "../../x"), ("a/b",), ("",)):
        with pytest.raises(Sme2Error):
            root.report_path(*parts)
    with pytest.raises(DataRootError, match="outside the data root"):
        root.within(tmp_path / "elsewhere")
    (root.reports / "link").symlink_to(tmp_path)  # a link inside that points outside
    with pytest.raises(DataRootError):
        root.report_path("link", "x")
    assert root.report_path("tiny_seg-fp32", "report.md") == root.reports / "tiny_seg-fp32" / "report.md"


def test_no_writer_builds_report_or_run_paths_by_hand():
    """Report and run folders come from DataRoot.report_path / run_path, which check names and
    containment; a path joined by hand from a stored name would bypass that."""
    offenders = []
    for path in [*(REPO / "kit").rglob("*.py"), *(REPO / "sme2_assets").rglob("*.py")]:
        if path.name == "home.py":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\.reports\s*/|\broot\.runs\s*/", line):
                offenders.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


HOSTILE = "<script>document.title='pwned-1'</script><img src=x onerror=\"document.title='pwned-2'\">"
CLOSE_SCRIPT = "</script><script>document.title='pwned-3'</script>"


def hostile_report(tmp_path) -> Path:
    root = DataRoot.resolve(tmp_path / "home")
    _, on = pair(root, platform=HOSTILE, conditions={"cpu_model": HOSTILE})
    with duckdb.connect(str(root.warehouse)) as conn:  # an op type as a hostile store row has it
        conn.execute(
            "UPDATE op_stats SET op_type = ? WHERE run_id = ? AND op_type LIKE 'Convolution%'", [CLOSE_SCRIPT, on]
        )
    return builder.build(root, "tiny_seg-fp32").html


def test_report_text_and_chart_specs_cannot_carry_markup(tmp_path):
    page = hostile_report(tmp_path).read_text()
    md = page and (tmp_path / "home" / "reports" / "tiny_seg-fp32" / "report.md").read_text()
    assert "<script>document" not in md and "<img" not in md  # the Markdown shows them as text
    assert HOSTILE not in page and CLOSE_SCRIPT not in page
    assert page.count("<script>") == 2, "only the page's own two scripts"
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page).group(1)
    assert "script-src 'sha256-" in csp and "'unsafe-inline'" not in csp.split("style-src")[0]
    assert "default-src 'none'" in csp


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/setup.sh installs it)")
def test_hostile_values_do_not_run_in_chromium_and_charts_still_draw(tmp_path):
    page = hostile_report(tmp_path)
    dom = chromium("--dump-dom", url=page).stdout
    assert "pwned" not in re.search(r"<title>(.*?)</title>", dom, re.S).group(1)
    assert 'src="x"' not in dom  # no injected element
    assert dom.count('class="marks"') >= 3, "the charts rendered under the page's CSP"
    assert 'class="err"' not in dom
    shutil.rmtree(tmp_path / "home" / ".chromium", ignore_errors=True)


def test_report_json_helpers():
    assert json.loads(render.script_json({"s": CLOSE_SCRIPT})) == {"s": CLOSE_SCRIPT}
    assert "</" not in render.script_json({"s": CLOSE_SCRIPT})
    assert render.escape_markdown("`<b>` and <i>") == "`<b>` and &lt;i>"
