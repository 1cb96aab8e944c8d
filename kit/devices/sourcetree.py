"""`sme2 source fetch`: the ExecuTorch source tree the `source` recipe builds (the only way to an
SME2-off runner on SME2 hardware), cloned at the commit the installed executorch wheel was built
from (`executorch.version.git_version`), with every submodule at the commit the tree pins.

Resumable: each step is idempotent (an existing clone is fetched into, submodules already at their
pinned commit are skipped), so an interrupted fetch is finished by running it again. Shallow
(depth 1) where the server allows fetching a commit by id (GitHub does), else full. What it got is
checked by git's own content hashes: HEAD must be the asked-for commit and every submodule's HEAD
the commit the tree pins; the manifest beside the tree records them and the root tree's hash.

The URL (ours, a user's, or one a .gitmodules file names) reaches git only through an allowlist of
transports (GIT_ALLOW_PROTOCOL: https, ssh, git; file only when the user asked for a local
source): `ext::` and other command-running transports cannot be reached, and no argument can be
read as an option (URLs and revisions are validated; `--` before paths)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from kit.core import atomic, environment, lifetime
from kit.core.errors import Sme2Error

DEFAULT_URL = "https://github.com/pytorch/executorch.git"
MANIFEST_SUFFIX = ".sme2-source.json"
REVISION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,199}")
FULL_SHA = re.compile(r"[0-9a-f]{40}")
REMOTE_URL = re.compile(r"(https|ssh|git)://[^\s]+|[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\s]+")


class SourceFetchError(Sme2Error):
    pass


def cache_dir() -> Path:
    """Source trees are machine-wide, like the build cache (hundreds of MB; every data root uses them)."""
    return Path(environment.get("SME2_SOURCE_CACHE") or Path.home() / ".cache" / "sme2" / "sources")


def default_dest() -> Path:
    return cache_dir() / "executorch"  # ExecuTorch's CMakeLists.txt requires the folder name


def manifest_path(dest: Path) -> Path:
    return dest.parent / f"{dest.name}{MANIFEST_SUFFIX}"


def fetched_manifest() -> dict:
    """What `sme2 source fetch` recorded of the tree in the default place ({} when none)."""
    try:
        manifest = json.loads(manifest_path(default_dest()).read_text())
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def fetched_tree() -> Path | None:
    """The tree `sme2 source fetch` completed in the default place, or None."""
    dest = default_dest()
    return dest if fetched_manifest().get("complete") is True and (dest / "CMakeLists.txt").exists() else None


def configured_tree(props: dict) -> str | None:
    """The ExecuTorch source tree a source build uses: a device's `executorch_repo`, else
    $EXECUTORCH_REPO, else the tree `sme2 source fetch` completed; None when there is none."""
    fetched = fetched_tree()
    return props.get("executorch_repo") or os.environ.get("EXECUTORCH_REPO") or (str(fetched) if fetched else None)


def wheel_commit() -> str:
    """The commit the installed executorch wheel was built from."""
    try:
        from executorch.version import git_version
    except ImportError as e:
        raise SourceFetchError(
            "executorch is not installed, so the commit to fetch is unknown",
            "install executorch==1.5.1 or pass --commit",
        ) from e
    return git_version


def check_url(url: str) -> tuple[str, bool]:
    """(url, local): a remote URL of an allowed transport, or a local repository path."""
    if url.startswith("-") or "\0" in url or "\n" in url:
        raise SourceFetchError(f"source URL {url!r} is not a URL", "use an https:// or ssh:// URL, or a local path")
    if REMOTE_URL.fullmatch(url):
        return url, False
    if url.startswith("file://"):
        path = Path(url[len("file://") :])
    elif "::" in url or re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", url):
        raise SourceFetchError(
            f"source URL {url!r} uses a transport sme2 does not allow",
            "use https://, ssh://, git://, user@host:path or a local repository path",
        )
    else:
        path = Path(url).expanduser()
    if not path.is_absolute():
        path = path.resolve()
    if not path.exists():
        raise SourceFetchError(f"no repository at {path}", "give an https:// URL or an existing local repository")
    return str(path), True


def check_revision(revision: str) -> str:
    if not REVISION.fullmatch(revision) or ".." in revision:
        raise SourceFetchError(
            f"revision {revision!r} is not a commit, tag or branch name",
            "use a 40-hex commit id or a tag such as v1.5.1",
        )
    return revision


@dataclass
class Git:
    """git with a fixed, safe environment: no prompts, only allowed transports."""

    allow_file: bool = False
    log: Path | None = None

    def env(self) -> dict:
        env = dict(os.environ)
        env["GIT_TERMINAL_PROMPT"] = "0"
        env["GIT_ALLOW_PROTOCOL"] = "https:ssh:git" + (":file" if self.allow_file else "")
        env.pop("GIT_DIR", None)
        env.pop("GIT_WORK_TREE", None)
        return env

    def run(self, argv: list[str], cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
        git = shutil.which("git")
        if git is None:
            raise SourceFetchError(
                "git is not installed", "install git (Xcode command-line tools on a Mac; apt on Linux)"
            )
        args = [git]
        if self.allow_file:
            args += ["-c", "protocol.file.allow=always"]  # submodules of a local mirror (git >= 2.38.1 blocks them)
        proc = subprocess.run(
            [*args, *argv],
            cwd=cwd,
            env=self.env(),
            capture_output=True,
            text=True,
            errors="replace",
            preexec_fn=lifetime.die_with_parent(),
        )
        if self.log is not None:
            with self.log.open("a") as f:
                f.write(f"$ git {' '.join(argv)}\n{proc.stdout}{proc.stderr}\n")
        if check and proc.returncode != 0:
            raise SourceFetchError(
                f"git {argv[0]} failed (exit {proc.returncode}): {proc.stderr.strip()[-600:]}",
                f"check the network and the URL; re-running `sme2 source fetch` resumes{self._log_hint()}",
            )
        return proc

    def _log_hint(self) -> str:
        return f" (full log: {self.log})" if self.log else ""


def submodule_paths(dest: Path, git: Git) -> list[str]:
    """The top-level submodules the checked-out tree declares."""
    if not (dest / ".gitmodules").exists():
        return []
    proc = git.run(["config", "-f", ".gitmodules", "--get-regexp", r"^submodule\..*\.path$"], cwd=dest, check=False)
    return [line.split(" ", 1)[1].strip() for line in proc.stdout.splitlines() if " " in line]


def submodule_state(dest: Path, git: Git) -> dict[str, tuple[str, str]]:
    """{path: (state, commit)} of every submodule, nested ones included: state ' ' is at the pinned
    commit, '-' not checked out, '+' at another commit, 'U' conflicted."""
    proc = git.run(["submodule", "status", "--recursive"], cwd=dest, check=False)
    out = {}
    for line in proc.stdout.splitlines():
        if len(line) > 42:
            state, sha, path = line[0], line[1:41], line[42:].split(" (")[0]
            out[path] = (state, sha)
    return out


def fetch(
    dest: Path | None = None,
    url: str = DEFAULT_URL,
    revision: str | None = None,
    say: Callable[[str], None] | None = None,
    count: Callable[[int, int], None] | None = None,
) -> dict:
    """Clone (or finish cloning) ExecuTorch at `revision` (default: the wheel's commit) into `dest`
    (default: the machine's source cache) with all submodules; returns the manifest."""
    say = say or (lambda m: None)
    count = count or (lambda done, total: None)
    dest = Path(dest).expanduser().absolute() if dest else default_dest()
    if dest.name != "executorch":
        raise SourceFetchError(
            f"{dest} must be a folder named exactly 'executorch' (ExecuTorch's CMakeLists.txt refuses other names)",
            f"use --dest {dest / 'executorch'}",
        )
    url, local = check_url(url)
    revision = check_revision(revision or wheel_commit())
    dest.parent.mkdir(parents=True, exist_ok=True)
    log = dest.parent / f"{dest.name}.fetch.log"
    git = Git(allow_file=local, log=log)
    t0 = time.monotonic()
    manifest_file = manifest_path(dest)
    manifest_file.unlink(missing_ok=True)  # incomplete until the end: the source recipe will not use it

    if dest.exists() and not (dest / ".git").exists() and any(dest.iterdir()):
        raise SourceFetchError(
            f"{dest} exists and is not a git checkout", "remove it or give another --dest (its parent's name is free)"
        )
    if not (dest / ".git").exists():
        say("initialising the clone")
        git.run(["init", "-q", "--", str(dest)])
    remotes = git.run(["remote"], cwd=dest).stdout.split()
    git.run(["remote", "set-url" if "origin" in remotes else "add", "origin", url], cwd=dest)

    say(f"fetching ExecuTorch {revision[:12]}")
    count(0, 1)
    if git.run(["fetch", "-q", "--depth", "1", "origin", revision], cwd=dest, check=False).returncode != 0:
        # A server that refuses a commit by id at depth 1: fetch everything, then find it.
        git.run(["fetch", "-q", "--tags", "origin"], cwd=dest)
        target = revision
    else:
        target = "FETCH_HEAD"
    commit = git.run(["rev-parse", "--verify", "--quiet", f"{target}^{{commit}}"], cwd=dest, check=False).stdout.strip()
    if not FULL_SHA.fullmatch(commit) or (FULL_SHA.fullmatch(revision) and commit != revision):
        raise SourceFetchError(
            f"{url} has no commit {revision!r}",
            "check --commit (the wheel's is executorch.version.git_version) or use the nearest release tag, e.g. "
            "--commit v1.5.1",
        )
    git.run(["checkout", "-q", "--detach", commit], cwd=dest)

    paths = submodule_paths(dest, git)
    git.run(["submodule", "sync", "--recursive", "-q"], cwd=dest)
    state = submodule_state(dest, git)
    for i, path in enumerate(paths):
        count(i, len(paths))
        if state.get(path, ("-", ""))[0] == " " and not _nested_missing(state, path):
            continue  # resumed: already at its pinned commit
        say(f"submodule {path} ({i + 1}/{len(paths)})")
        update = ["submodule", "update", "--init", "--recursive", "--depth", "1", "--", path]
        if git.run(update, cwd=dest, check=False).returncode != 0:
            git.run([*update[:4], "--", path], cwd=dest)  # a server refusing commits by id: full history
    count(len(paths), len(paths))

    say("verifying")
    head = git.run(["rev-parse", "HEAD"], cwd=dest).stdout.strip()
    state = submodule_state(dest, git)
    wrong = {p: s for p, (s, _) in state.items() if s != " "}
    if head != commit or wrong:
        raise SourceFetchError(
            f"the tree at {dest} is not what was asked for: HEAD {head[:12]} (want {commit[:12]})"
            + (f", submodules not at their pinned commits: {', '.join(sorted(wrong))}" if wrong else ""),
            "run `sme2 source fetch` again (it resumes); if it repeats, remove the folder and fetch anew",
        )
    manifest = {
        "complete": True,
        "url": url,
        "revision": revision,
        "commit": commit,
        "tree": git.run(["rev-parse", "HEAD^{tree}"], cwd=dest).stdout.strip(),
        "submodules": {p: sha for p, (_, sha) in sorted(state.items())},
        "path": str(dest),
        "seconds": round(time.monotonic() - t0, 1),
    }
    atomic.write_json(manifest_file, manifest)
    return manifest


def _nested_missing(state: dict[str, tuple[str, str]], parent: str) -> bool:
    return any(p.startswith(parent + "/") and s != " " for p, (s, _) in state.items())
