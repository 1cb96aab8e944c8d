"""`sme2 source fetch` against real git repositories on this disk: an "executorch" repository with
a submodule that has a nested submodule, cloned at a commit, resumed after damage, verified by
git's hashes, and refusing URLs, revisions and .gitmodules entries that could run commands."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from kit.devices import inventory
from kit.devices import sourcetree
from kit.devices.sourcetree import SourceFetchError


def git(cwd: Path, *args: str) -> str:
    argv = ["git", "-c", "protocol.file.allow=always", "-c", "user.name=t", "-c", "user.email=t@t", *args]
    return subprocess.run(argv, cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def repo(path: Path, files: dict[str, str]) -> Path:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "init")
    return path


@pytest.fixture(scope="module")
def upstream(tmp_path_factory) -> tuple[Path, str, str]:
    """(executorch repo, the pinned commit, a later commit): XNNPACK-like submodule with a nested one."""
    base = tmp_path_factory.mktemp("upstream")
    nested = repo(base / "cpuinfo", {"CMakeLists.txt": "# cpuinfo\n"})
    sub = repo(base / "xnnpack", {"CMakeLists.txt": "# xnnpack\n"})
    git(sub, "submodule", "add", "-q", str(nested), "third-party/cpuinfo")
    git(sub, "commit", "-q", "-m", "nested")
    et = repo(base / "et-upstream", {"CMakeLists.txt": "# executorch\n", "backends/xnnpack/README": "x\n"})
    git(et, "submodule", "add", "-q", str(sub), "backends/xnnpack/third-party/XNNPACK")
    git(et, "commit", "-q", "-m", "submodules")
    pinned = git(et, "rev-parse", "HEAD")
    (et / "later.txt").write_text("later\n")
    git(et, "add", "-A")
    git(et, "commit", "-q", "-m", "later")
    return et, pinned, git(et, "rev-parse", "HEAD")


def test_fetch_clones_the_commit_with_nested_submodules_and_records_what_it_got(upstream, tmp_path, monkeypatch):
    et, pinned, later = upstream
    monkeypatch.setenv("SME2_SOURCE_CACHE", str(tmp_path / "sources"))
    steps = []
    manifest = sourcetree.fetch(url=str(et), revision=pinned, count=lambda d, t: steps.append((d, t)))
    dest = sourcetree.default_dest()
    assert manifest["commit"] == pinned and git(dest, "rev-parse", "HEAD") == pinned
    assert not (dest / "later.txt").exists()  # the asked-for commit, not the branch tip
    assert (dest / "backends/xnnpack/third-party/XNNPACK/third-party/cpuinfo/CMakeLists.txt").is_file()
    assert set(manifest["submodules"]) == {
        "backends/xnnpack/third-party/XNNPACK",
        "backends/xnnpack/third-party/XNNPACK/third-party/cpuinfo",
    }
    assert manifest["tree"] == git(et, "rev-parse", f"{pinned}^{{tree}}")  # git's content hash of the tree
    assert json.loads(sourcetree.manifest_path(dest).read_text()) == manifest
    assert steps[-1] == (1, 1)
    # The source recipe now finds it, without EXECUTORCH_REPO.
    monkeypatch.delenv("EXECUTORCH_REPO", raising=False)
    assert sourcetree.fetched_tree() == dest
    assert inventory.source_tree(inventory.Device("m", "local", "macos-arm64")) == str(dest)


def test_fetch_resumes_after_damage_and_skips_what_is_there(upstream, tmp_path, monkeypatch):
    et, pinned, _ = upstream
    monkeypatch.setenv("SME2_SOURCE_CACHE", str(tmp_path / "sources"))
    sourcetree.fetch(url=str(et), revision=pinned)
    dest = sourcetree.default_dest()
    log = dest.parent / "executorch.fetch.log"
    # Second run: nothing to do for the submodule.
    log.write_text("")
    sourcetree.fetch(url=str(et), revision=pinned)
    assert "submodule update" not in log.read_text()
    # An interrupted fetch: the nested submodule never checked out.
    xnn = dest / "backends/xnnpack/third-party/XNNPACK"
    git(xnn, "submodule", "deinit", "-q", "-f", "--", "third-party/cpuinfo")
    assert not (xnn / "third-party/cpuinfo/CMakeLists.txt").exists()
    sourcetree.fetch(url=str(et), revision=pinned)
    assert (xnn / "third-party/cpuinfo/CMakeLists.txt").is_file()


def test_unknown_commit_is_a_clear_error_and_leaves_no_manifest(upstream, tmp_path, monkeypatch):
    et, _, _ = upstream
    monkeypatch.setenv("SME2_SOURCE_CACHE", str(tmp_path / "sources"))
    with pytest.raises(SourceFetchError, match="has no commit") as info:
        sourcetree.fetch(url=str(et), revision="0" * 40)
    assert "--commit" in info.value.hint
    assert sourcetree.fetched_tree() is None and not sourcetree.manifest_path(sourcetree.default_dest()).exists()


@pytest.mark.parametrize(
    "url, match",
    [
        ("ext::sh -c touch% /tmp/sme2-pwned", "transport sme2 does not allow"),
        ("-uhelp", "not a URL"),
        ("fd::17", "transport sme2 does not allow"),
        ("/no/such/repository", "no repository at"),
    ],
)
def test_urls_that_could_run_commands_or_options_are_refused(url, match, tmp_path):
    with pytest.raises(SourceFetchError, match=match):
        sourcetree.fetch(dest=tmp_path / "executorch", url=url, revision="main")
    assert not (tmp_path / "executorch").exists()


@pytest.mark.parametrize("revision", ["--upload-pack=touch /tmp/x", "main..other", "a b"])
def test_revisions_cannot_be_options(revision, upstream, tmp_path):
    with pytest.raises(SourceFetchError, match="not a commit, tag or branch"):
        sourcetree.fetch(dest=tmp_path / "executorch", url=str(upstream[0]), revision=revision)


def test_a_gitmodules_url_with_a_command_transport_is_not_run(tmp_path):
    """A hostile tree's .gitmodules names `ext::`: git refuses the transport (GIT_ALLOW_PROTOCOL), so
    nothing runs, and the fetch fails naming the step."""
    marker = tmp_path / "pwned"
    evil = repo(tmp_path / "evil", {"CMakeLists.txt": "#\n"})
    sub = repo(tmp_path / "sub", {"a": "a\n"})
    git(evil, "submodule", "add", "-q", str(sub), "third-party/x")
    git(evil, "config", "-f", ".gitmodules", "submodule.third-party/x.url", f"ext::sh -c touch% {marker}")
    git(evil, "commit", "-q", "-am", "evil")
    with pytest.raises(SourceFetchError, match="git submodule failed"):
        sourcetree.fetch(dest=tmp_path / "out" / "executorch", url=str(evil), revision=git(evil, "rev-parse", "HEAD"))
    assert not marker.exists()


def test_destination_must_be_named_executorch_and_not_hold_other_files(upstream, tmp_path):
    with pytest.raises(SourceFetchError, match="named exactly 'executorch'"):
        sourcetree.fetch(dest=tmp_path / "et", url=str(upstream[0]), revision=upstream[1])
    (tmp_path / "executorch").mkdir()
    (tmp_path / "executorch" / "mine.txt").write_text("keep me\n")
    with pytest.raises(SourceFetchError, match="not a git checkout"):
        sourcetree.fetch(dest=tmp_path / "executorch", url=str(upstream[0]), revision=upstream[1])
    assert (tmp_path / "executorch" / "mine.txt").read_text() == "keep me\n"


def test_the_default_commit_is_the_wheels():
    from executorch.version import git_version

    assert sourcetree.wheel_commit() == git_version and len(git_version) == 40
