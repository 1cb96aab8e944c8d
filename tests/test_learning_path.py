"""The learning path (docs/learning-path/) as a tested artifact.

- Its files, front matter and validation gates follow the plan and Arm's learning-path format.
- Every shell block parses (`bash -n`) and every `sme2` flag it uses exists: a renamed flag breaks
  this test, not a reader.
- Every unmarked block runs, in page order, in a copy of the repository with a fresh data root, on
  the default model and the emulated SME2 pair (the time from the clean data root to `pipeline ok`
  is printed).
- The figures regenerate from real runs with the same structure.
- Hugo builds the pages in a minimal site with Arm's `learningpathall` layout and image rule, and
  headless Chromium opens every page without a broken link or a missing image."""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from kit.cli.main import cli
from kit.report import figures
from tests.browser import CHROMIUM, text_problems
from tests import docblocks

REPO = Path(__file__).resolve().parent.parent
LP = REPO / "docs" / "learning-path"
PAGES = [
    "_index.md",
    "01-overview.md",
    "02-setup-and-model-onboarding.md",
    "03-pipeline-and-analysis.md",
    "04-agent-skills.md",
]
SKILL_PAGES = sorted((REPO / "skills").glob("*/SKILL.md"))
INDEX_KEYS = (
    "title",
    "minutes_to_complete",
    "who_is_this_for",
    "learning_objectives",
    "prerequisites",
    "author",
    "skilllevels",
    "subjects",
    "armips",
    "operatingsystems",
    "tools_software_languages",
    "further_reading",
    "weight",
    "layout",
    "learning_path_main_page",
)
GATE = "What you should see"
HUGO = shutil.which("hugo")
# Where Arm's site keeps this learning path; its image rule depends on "learning-paths" in the URL.
SITE_SECTION = "learning-paths/embedded-and-microcontrollers/sme-executorch-profiling"


def page_blocks() -> list[docblocks.Block]:
    return [b for p in PAGES for b in docblocks.blocks(LP / p)]


def all_shell_blocks() -> list[docblocks.Block]:
    return [b for b in page_blocks() + [b for s in SKILL_PAGES for b in docblocks.blocks(s)] if b.shell]


# ---------------------------------------------------------------- structure (fast)


def test_file_map_is_the_plans():
    assert sorted(p.name for p in LP.glob("*.md")) == sorted(PAGES)
    for name in ("stack.svg", "sme2_latency.svg", "category_breakdown.svg", "transpose_hotspots.svg", "figures.json"):
        assert (LP / "images" / name).stat().st_size > 500, name
    assert (LP / "sample-report" / "report.md").exists()


def test_front_matter_follows_arm_learning_paths():
    meta, body = docblocks.front_matter(LP / "_index.md")
    assert [k for k in INDEX_KEYS if k not in meta] == []
    assert meta["layout"] == "learningpathall" and meta["weight"] == 1 and meta["learning_path_main_page"] == "yes"
    assert isinstance(meta["minutes_to_complete"], int) and len(meta["learning_objectives"]) >= 3
    assert all({"title", "link", "type"} <= set(r["resource"]) for r in meta["further_reading"])
    assert "01-overview/" in body  # the landing page is wayfinding: it sends the reader to page 1
    weights = []
    for name in PAGES[1:]:
        meta, _ = docblocks.front_matter(LP / name)
        assert meta["layout"] == "learningpathall" and meta["title"], name
        weights.append(meta["weight"])
    assert weights == sorted(weights) and weights[0] > 1 and len(set(weights)) == len(weights)


def test_each_page_ends_with_its_validation_gate():
    for name in PAGES[1:]:
        lines = (LP / name).read_text().splitlines()
        headings = [(i + 1, line[3:]) for i, line in enumerate(lines) if line.startswith("## ")]
        gate_line, last = headings[-1]
        assert last == GATE, f"{name}: the last section must be '{GATE}'"
        gate = [b for b in docblocks.blocks(LP / name) if b.line > gate_line]
        assert any(b.runs and "sme2 check" in b.text for b in gate), f"{name}: the gate runs no `sme2 check`"


def test_markers_say_why():
    for b in all_shell_blocks():
        if b.not_run is not None:
            assert len(b.not_run) > 10, f"{b.where()}: say why the block is not run"


def test_shell_blocks_parse():
    problems = []
    for b in all_shell_blocks():
        proc = subprocess.run(["bash", "-n"], input=b.text, capture_output=True, text=True)
        if proc.returncode:
            problems.append(f"{b.where()}: {proc.stderr.strip()}")
    assert not problems, "\n".join(problems)


def test_runnable_blocks_are_self_contained():
    """A block may use only variables it sets itself (or that have a default, `${X:-...}`): a
    reader who jumps to a section, or opens a new terminal, can run it as it is."""
    problems = []
    for b in all_shell_blocks():
        if not b.runs:
            continue
        assigned = set(re.findall(r"\b([A-Z_][A-Z0-9_]*)=", b.text)) | {"HOME", "PATH", "PWD"}
        used = set(re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)(?!:-)\b(?!:-)", b.text))
        defaulted = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*):-", b.text))
        problems += [f"{b.where()}: ${v} is set outside the block" for v in sorted(used - assigned - defaulted)]
    assert not problems, "\n".join(problems)


def test_every_sme2_flag_exists():
    options = docblocks.command_options(cli)
    assert ("pipeline",) in options and ("docs", "figures") in options and ("check",) in options
    problems, calls = [], 0
    for b in all_shell_blocks():
        for args in docblocks.sme2_calls(b.text):
            calls += 1
            problems += [f"{b.where()}: {p}" for p in docblocks.unknown_flags(args, options)]
    assert calls > 40 and not problems, "\n".join(problems)


def test_flag_check_catches_a_renamed_flag():
    options = docblocks.command_options(cli)
    assert docblocks.unknown_flags(["export", "--model", "x", "--output-dir", "y"], options) == [
        "sme2 export has no option --output-dir"
    ]
    assert docblocks.unknown_flags(["warehouse", "info", "--json"], options) == []
    assert docblocks.unknown_flags(["nope"], options) == ["unknown command: sme2 nope"]
    calls = docblocks.sme2_calls('X=1 sme2 check a && echo "sme2 fake" | sme2 sql "q" -f json # sme2 no\n')
    assert calls == [["check", "a"], ["sql", "q", "-f", "json"]]


def test_images_resolve_like_arms_site():
    """Arm's render-image hook resolves an image against the learning path's folder; every image
    the pages use exists there, and every generated figure is used."""
    used = set()
    for name in PAGES:
        for dest in re.findall(r"!\[[^\]]*\]\(([^)\s]+)", (LP / name).read_text()):
            assert not dest.startswith(("/", "http")), f"{name}: {dest} must be relative"
            assert (LP / dest).is_file(), f"{name}: missing image {dest}"
            used.add(dest)
    assert {f"images/{p.name}" for p in (LP / "images").glob("*.svg")} <= used


def test_skills_follow_the_agent_skills_layout():
    names = {p.parent.name for p in SKILL_PAGES}
    assert {"env-setup", "export-model", "build-runners", "run-pipeline", "summarize-results"} <= names
    assert {"smoke-test", "regression-check"} <= names
    for p in SKILL_PAGES:
        meta, body = docblocks.front_matter(p)
        assert meta["name"] == p.parent.name and re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", meta["name"])
        assert 40 < len(meta["description"]) <= 1024 and "Use " in meta["description"]
        sections = re.findall(r"^## (.+)$", body, flags=re.M)
        for s in ("Purpose", "When to use", "Prerequisites", "Steps", "Verification", "Expected outputs"):
            assert s in sections, f"{p}: no '{s}' section"
        assert "Failure table" in sections and "Checklist" in sections
        verification = body.split("## Verification", 1)[1].split("\n## ", 1)[0]
        assert f"sme2 check {meta['name']}" in verification, p


# ---------------------------------------------------------------- the pages run (slow)


def workspace_copy(dest: Path) -> Path:
    """The repository's files (tracked and untracked, not ignored) copied to dest: the reader's clone."""
    files = (
        subprocess.run(
            ["git", "-C", str(REPO), "ls-files", "-co", "--exclude-standard", "-z"], capture_output=True, check=True
        )
        .stdout.decode()
        .split("\0")
    )
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    subprocess.run(["git", "init", "-q", str(dest)], check=True)  # a clone is a git checkout
    return dest


def reader_env(workspace: Path, tools: Path) -> dict:
    """The environment of a reader in their clone: `sme2` from this code, the default data root
    (./.sme2), the emulator tools `sme2 setup` already fetched."""
    env = {k: v for k, v in os.environ.items() if k not in ("SME2_HOME", "DAGSTER_HOME", "SME2_MODELS")}
    env.update(
        PYTHONPATH=str(workspace),
        SME2_TOOLS=str(tools),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        COLUMNS="200",
    )
    return env


def run_block(b: docblocks.Block, cwd: Path, env: dict, log) -> subprocess.CompletedProcess:
    t0 = time.monotonic()
    proc = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", b.text],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,  # a safety net against a hung block, not an assertion
    )
    log.write(f"## {b.where()} ({time.monotonic() - t0:.0f} s, exit {proc.returncode})\n```\n{b.text}```\n")
    log.write(f"```\n{proc.stdout}{proc.stderr}```\n\n")
    log.flush()
    return proc


# Nightly: the pages' commands and flags are checked on every push (test_every_sme2_flag_exists,
# test_shell_blocks_parse) and the skills' steps and checks run for real (tests/test_skills.py);
# walking every block in order on a fresh data root takes ~8 min of the push tier's 2 cores.
@pytest.mark.nightly
@pytest.mark.slow
@pytest.mark.qemu
def test_every_unmarked_block_runs_in_order(tmp_path, qemu_setup, home):
    workspace = workspace_copy(tmp_path / "sme2-platform")
    env = reader_env(workspace, home.tools)
    transcript = tmp_path / "transcript.md"
    runnable = [b for b in page_blocks() if b.runs]
    assert len(runnable) >= 25
    t_start, to_pipeline_ok = time.monotonic(), None
    with transcript.open("w") as log:
        for b in runnable:
            proc = run_block(b, workspace, env, log)
            out = proc.stdout + proc.stderr
            assert proc.returncode == 0, f"{b.where()} failed (exit {proc.returncode}):\n{b.text}\n{out[-3000:]}"
            for text in b.expect:
                assert text in out, f"{b.where()}: expected {text!r} in the output:\n{out[-3000:]}"
            if "pipeline ok" in b.expect:
                to_pipeline_ok = time.monotonic() - t_start
    assert to_pipeline_ok is not None
    print(
        f"\nlearning path: clean data root -> 'pipeline ok' in {to_pipeline_ok:.0f} s; all pages in "
        f"{time.monotonic() - t_start:.0f} s; transcript {transcript}"
    )
    # The gates held: the data root has the page 1 artifact list and the checks passed (their blocks ran).
    root = workspace / ".sme2"
    assert list(root.glob("runs/*/etdump.etdp")) and list(root.glob("runs/*/*_robust_stats.json"))
    assert (root / "reports" / "tiny_seg-int8" / "report.html").exists()


# ---------------------------------------------------------------- figures


@pytest.mark.slow
@pytest.mark.qemu
def test_figures_regenerate_with_the_committed_structure(tmp_path, home, qemu_runs):
    out = tmp_path / "lp"
    env = {k: v for k, v in os.environ.items()}
    env.update(PYTHONPATH=str(REPO), SME2_TOOLS=str(home.tools))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kit.cli",
            "docs",
            "figures",
            "--out",
            str(out),
            "--home",
            str(home.path),
            "--no-profile",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    committed = json.loads((LP / "images" / "figures.json").read_text())
    fresh = json.loads((out / "images" / "figures.json").read_text())
    assert set(fresh["figures"]) == set(committed["figures"]) == set(figures.FIGURES)
    latency = (out / "images" / "sme2_latency.svg").read_text()
    assert fresh["emulated"] and "estimated cycles" in latency and "not hardware time" in latency
    for name, file in committed["figures"].items():
        again = figures.structure((out / "images" / file).read_text())
        assert again == figures.structure((LP / "images" / file).read_text()), f"{name} changed structure"
        assert again == committed["structure"][name]
    assert (out / "images" / "stack.svg").read_text() == (LP / "images" / "stack.svg").read_text()
    report = (out / "sample-report" / "report.md").read_text()
    assert report.startswith("---\ntitle:") and "list: never" in report and str(home.path) not in report
    for img in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report):
        assert (out / "sample-report" / img).exists()


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/setup.sh installs it)")
def test_committed_figures_fit_their_text(tmp_path):
    """Every title, label and legend of the committed figures lies inside the figure, is not cut
    short, and overlaps no other text, as Chromium lays them out."""
    problems = {svg.name: text_problems(svg, tmp_path) for svg in sorted((LP / "images").glob("*.svg"))}
    assert problems and not any(problems.values()), problems


def test_structure_ignores_numbers_and_sees_labels():
    svg = figures.stack_svg()
    s = figures.structure(svg)
    assert "SME2" in s["texts"] and s["marks"] == {"layer": 5}
    assert figures.structure(svg.replace("KleidiAI", "Kleidi")) != s
    a = '<svg xmlns="http://www.w3.org/2000/svg"><g class="mark-rect role-mark"><path/><path/></g><text>GEMM</text><text>1,200</text></svg>'
    b = a.replace("1,200", "900")
    assert figures.structure(a) == figures.structure(b) == {"texts": ["GEMM"], "marks": {"mark-rect role-mark": 2}}
    assert figures.structure(a.replace("<path/><path/>", "<path/>")) != figures.structure(a)


# ---------------------------------------------------------------- the pages render


LAYOUT = """<!doctype html><html><head><meta charset="utf-8"><title>{{ .Title }}</title></head>
<body data-layout="{{ .Layout }}"><h1>{{ .Title }}</h1>{{ .Content }}
{{ if .IsSection }}{{ range .Pages }}<a class="nav" href="{{ .RelPermalink }}">{{ .Title }}</a>{{ end }}{{ end }}
<pre id="lp-check">pending</pre>
<script>
window.addEventListener("load", async () => {
  const broken = [];
  for (const img of document.images) {
    if (!img.complete || img.naturalWidth === 0) broken.push("image " + img.getAttribute("src"));
  }
  const seen = new Set();
  for (const a of document.querySelectorAll("a[href]")) {
    const url = new URL(a.getAttribute("href"), location.href);
    if (url.origin !== location.origin || seen.has(url.pathname)) continue;
    seen.add(url.pathname);
    const r = await fetch(url.pathname);
    if (!r.ok) broken.push("link " + a.getAttribute("href") + " -> " + r.status);
  }
  document.getElementById("lp-check").textContent = JSON.stringify({broken, links: seen.size, images: document.images.length});
});
</script></body></html>
"""
# Arm's theme (layouts/_default/_markup/render-image.html): a relative image is resolved against
# the learning path's folder, i.e. the parent of the page's URL; the title becomes the caption.
RENDER_IMAGE = """{{ $src := .Destination }}{{ $dir := path.Dir (trim .Page.RelPermalink "/") }}
{{ if and (in $dir "learning-paths") (not (hasPrefix $src "http")) }}{{ $src = printf "/%s/%s" $dir .Destination }}{{ end }}
<img src="{{ $src | safeURL }}" alt="{{ .Text }}" title="{{ .Title }}">{{ with .Title }}<p class="caption">{{ . }}</p>{{ end }}"""


def build_site(site: Path) -> Path:
    shutil.copytree(LP, site / "content" / SITE_SECTION)
    layouts = site / "layouts" / "_default"
    (layouts / "_markup").mkdir(parents=True)
    for name in ("learningpathall.html", "single.html", "list.html"):
        (layouts / name).write_text(LAYOUT)
    (layouts / "_markup" / "render-image.html").write_text(RENDER_IMAGE)
    (site / "hugo.toml").write_text(
        'baseURL = "/"\ntitle = "learning path test"\ndisableKinds = ["taxonomy", "term", "RSS", "sitemap"]\n'
        "[markup.goldmark.renderer]\nunsafe = true\n"
    )
    proc = subprocess.run(
        [HUGO, "--source", str(site), "--quiet", "--panicOnWarning"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"hugo failed:\n{proc.stdout}\n{proc.stderr}"
    return site / "public"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # no request log on the test's stderr
        pass


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None or HUGO is None, reason="needs chromium and hugo (scripts/setup.sh installs both)")
def test_pages_build_with_hugo_and_open_in_chromium(tmp_path):
    public = build_site(tmp_path / "site")
    pages = sorted((public / SITE_SECTION).rglob("index.html"))
    assert len(pages) == len(PAGES) + 1  # the five pages and the sample report
    # A static file server in this process (a thread): nothing to wait for or kill afterwards.
    handler = functools.partial(_QuietHandler, directory=str(public))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        titles = []
        for page in pages:
            url = f"http://127.0.0.1:{port}/{page.parent.relative_to(public)}/"
            dom = subprocess.run(
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
                    f"--user-data-dir={tmp_path / 'chromium'}",
                    "--virtual-time-budget=10000",
                    "--dump-dom",
                    url,
                ],
                capture_output=True,
                text=True,
                timeout=120,
            ).stdout
            check = re.search(r'<pre id="lp-check">(.*?)</pre>', dom, flags=re.S)
            assert check and check[1] != "pending", f"{url}: the page's check did not run:\n{dom[:500]}"
            result = json.loads(check[1].replace("&quot;", '"').replace("&gt;", ">").replace("&amp;", "&"))
            assert result["broken"] == [], f"{url}: {result['broken']}"
            assert 'data-layout="learningpathall"' in dom, f"{url}: not rendered with the learningpathall layout"
            titles.append(re.search(r"<h1>(.*?)</h1>", dom)[1])
            if page.parent.name == SITE_SECTION.rsplit("/", 1)[1]:
                assert result["links"] >= len(PAGES) - 1  # the landing page leads to every step page
    finally:
        server.shutdown()
        server.server_close()
    assert len(set(titles)) == len(pages)
