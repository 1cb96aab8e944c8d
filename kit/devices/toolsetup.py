"""`sme2 setup`: everything the emulated Armv9 targets need, obtained without root where possible
and proved to work.

1. QEMU >= 10.1 (user mode): one on PATH if new enough, else Debian testing's statically linked
   qemu-user package, fetched with `apt-get download` under a private sources list derived at run
   time from this machine's own apt configuration, and unpacked into $SME2_HOME/tools/qemu.
2. The aarch64 cross compiler and sysroot (g++-aarch64-linux-gnu; installed with apt as root).
3. The aarch64 executorch wheel (pip download), unpacked into $SME2_HOME/tools/executorch-aarch64.
4. A tiny aarch64 probe reading HWCAP2 under `-cpu max` (SME2 on) and `-cpu max,sme=off`."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from kit.core import atomic, environment, platforms
from kit.core.errors import Sme2Error
from kit.core.home import DataRoot
from kit.core.versions import executorch_version
from kit.devices import conditions
from kit.devices.transports.qemu import cpu_args

MIN_QEMU = (10, 1)
CROSS_CXX = "aarch64-linux-gnu-g++"
CROSS_CC = "aarch64-linux-gnu-gcc"
SYSROOT = Path("/usr/aarch64-linux-gnu")
SETUP_FILE = "setup.json"
PROBE_C = r"""
#include <stdio.h>
#include <sys/auxv.h>
int main(void) { printf("%lu\n", (unsigned long)getauxval(AT_HWCAP2)); return 0; }
"""


class SetupError(Sme2Error):
    pass


def qemu_version(binary: str | Path) -> tuple[int, int] | None:
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"version (\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else None


def tools_qemu(root: DataRoot) -> Path:
    return root.tools / "qemu" / "usr" / "bin" / "qemu-aarch64"


def find_qemu(root: DataRoot) -> Path | None:
    """A qemu-aarch64 >= 10.1: $SME2_QEMU, then PATH, then the tools folder."""
    candidates = [
        environment.get("SME2_QEMU"),
        shutil.which("qemu-aarch64"),
        shutil.which("qemu-aarch64-static"),
        str(tools_qemu(root)),
    ]
    for c in candidates:
        if c and Path(c).exists():
            v = qemu_version(c)
            if v and v >= MIN_QEMU:
                return Path(c)
    return None


def apt_archive_uri(sources_dir: Path = Path("/etc/apt")) -> tuple[str, str]:
    """(URI, keyring) of this machine's main Debian archive, read from its apt configuration, so no
    mirror host is ever written into a committed file."""
    entries: list[tuple[str, str, str]] = []  # uri, suites, signed-by
    files = sorted((sources_dir / "sources.list.d").glob("*.sources")) + sorted(
        (sources_dir / "sources.list.d").glob("*.list")
    )
    if (sources_dir / "sources.list").exists():
        files.insert(0, sources_dir / "sources.list")
    for f in files:
        text = f.read_text(errors="replace")
        if f.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(
                    (k.strip().lower(), v.strip())
                    for k, _, v in (
                        l.partition(":") for l in stanza.splitlines() if ":" in l and not l.lstrip().startswith("#")
                    )
                )
                if "deb" in fields.get("types", "").split() and "uris" in fields:
                    entries.append((fields["uris"].split()[0], fields.get("suites", ""), fields.get("signed-by", "")))
        else:
            for line in text.splitlines():
                m = re.match(r"^\s*deb\s+(\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line)
                if m:
                    opts = m.group(1) or ""
                    key = re.search(r"signed-by=(\S+?)\]?\s*$", opts.strip("[] "))
                    entries.append((m.group(2), m.group(3), key.group(1) if key else ""))
    for uri, suites, key in entries:
        if re.search(r"/debian/?$", uri) and not re.search(
            r"-(security|updates|backports)\b", suites.split()[0] if suites else ""
        ):
            return uri.rstrip("/"), key
    raise SetupError(
        "cannot find a Debian archive in this machine's apt configuration",
        "add the Debian archive to /etc/apt/sources.list.d, or put a qemu-aarch64 >= 10.1 on PATH (or set SME2_QEMU)",
    )


def signed_by(keyring: str) -> str:
    return f"[signed-by={keyring}] " if keyring else ""


def private_apt(folder: Path, source_line: str) -> list[str]:
    """apt-get options for a private package index in `folder` holding one sources line: nothing of
    this machine's apt state is read or changed (no root needed for update/download/source)."""
    (folder / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (folder / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    (folder / "sources.list").write_text(source_line + "\n")
    opts = [
        "-o",
        f"Dir::Etc::SourceList={folder / 'sources.list'}",
        "-o",
        "Dir::Etc::SourceParts=/dev/null",
        "-o",
        f"Dir::State::Lists={folder / 'lists'}",
        "-o",
        f"Dir::Cache={folder / 'cache'}",
        "-o",
        "Dir::State::Status=/dev/null",
        "-o",
        "Debug::NoLocking=1",
    ]
    if os.geteuid() == 0:
        opts += ["-o", "APT::Sandbox::User=root"]  # _apt cannot write into our private temp folder
    return opts


def fetch_qemu(root: DataRoot, progress=None) -> Path:
    """Debian testing's qemu-user (static binaries), unpacked into the tools folder."""
    if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        raise SetupError(
            "QEMU >= 10.1 is needed and apt-get/dpkg-deb are not available to fetch it",
            "install qemu-user >= 10.1 yourself and put qemu-aarch64 on PATH (or set SME2_QEMU)",
        )
    uri, keyring = apt_archive_uri()
    say = progress or (lambda m: None)
    with tempfile.TemporaryDirectory(prefix="sme2-qemu-") as tmp:
        t = Path(tmp)
        opts = private_apt(t, f"deb {signed_by(keyring)}{uri} testing main")
        say(f"qemu: reading Debian testing's package list from {uri}")
        for argv in (["apt-get", *opts, "update"], ["apt-get", *opts, "download", "qemu-user"]):
            proc = subprocess.run(argv, capture_output=True, text=True, cwd=tmp)
            if proc.returncode != 0:
                raise SetupError(
                    f"fetching qemu-user from Debian testing failed: {' '.join(argv[:1] + argv[-1:])}: {proc.stderr.strip()[-400:]}",
                    "check network access to the Debian archive, or install qemu-user >= 10.1 and set SME2_QEMU",
                )
        debs = list(t.glob("qemu-user_*.deb"))
        if not debs:
            raise SetupError(
                "apt-get download produced no qemu-user package", "install qemu-user >= 10.1 and set SME2_QEMU"
            )
        dest = root.tools / "qemu"
        with atomic.staged_dir(dest) as stage:
            say("qemu: unpacking")
            proc = subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(stage)], capture_output=True, text=True)
            if proc.returncode != 0:
                raise SetupError(
                    f"cannot unpack {debs[0].name}: {proc.stderr.strip()}",
                    "check free disk space under $SME2_HOME/tools",
                )
            # Keep only the emulator we use (the package holds every architecture, ~470 MB).
            bindir = stage / "usr" / "bin"
            for f in bindir.iterdir():
                if f.name != "qemu-aarch64":
                    f.unlink()
            shutil.rmtree(stage / "usr" / "share", ignore_errors=True)
    q = tools_qemu(root)
    v = qemu_version(q)
    if not v or v < MIN_QEMU:
        raise SetupError(
            f"the fetched QEMU ({q}) reports version {v}", "install qemu-user >= 10.1 yourself and set SME2_QEMU"
        )
    return q


def can_apt_install() -> bool:
    return bool(shutil.which("apt-get")) and os.geteuid() == 0


def apt_install(packages: list[str], progress=None) -> None:
    """Install Debian packages as root (the caller checks can_apt_install); a failure names them."""
    if progress:
        progress(f"installing {' '.join(packages)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
    ):
        proc = subprocess.run(argv, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise SetupError(
                f"apt-get failed installing {' '.join(packages)}: {proc.stderr.strip()[-300:]}",
                f"run as root: apt-get install {' '.join(packages)}",
            )


def ensure_cross_compiler(progress=None) -> str:
    if shutil.which(CROSS_CXX) and SYSROOT.exists():
        return shutil.which(CROSS_CXX)
    if can_apt_install():
        apt_install(["g++-aarch64-linux-gnu"], progress)
        if shutil.which(CROSS_CXX):
            return shutil.which(CROSS_CXX)
    raise SetupError(
        f"the aarch64 cross compiler ({CROSS_CXX}) is not installed",
        "as root: apt-get install g++-aarch64-linux-gnu (it also provides the sysroot QEMU uses)",
    )


def aarch64_executorch_root(root: DataRoot) -> Path:
    return root.tools / "executorch-aarch64" / "executorch"


def ensure_aarch64_wheel(root: DataRoot, progress=None) -> Path:
    """The aarch64 executorch wheel of the installed version, its lib/include/share unpacked."""

    version = executorch_version()
    dest = root.tools / "executorch-aarch64"
    marker = dest / "VERSION"
    if (
        marker.exists()
        and marker.read_text().strip() == version
        and (dest / "executorch" / "share" / "cmake" / "executorch-config.cmake").exists()
    ):
        return dest / "executorch"
    if progress:
        progress(f"downloading the aarch64 executorch {version} wheel")
    with tempfile.TemporaryDirectory(prefix="sme2-wheel-") as tmp:
        argv = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--platform",
            "manylinux_2_28_aarch64",
            "--python-version",
            "3.11",
            f"executorch=={version}",
            "-d",
            tmp,
        ]
        proc = subprocess.run(argv, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("executorch-*.whl"))
        if proc.returncode != 0 or not wheels:
            raise SetupError(
                f"cannot download the aarch64 executorch {version} wheel: {proc.stderr.strip()[-300:]}",
                "check access to PyPI",
            )
        with atomic.staged_dir(dest) as stage:
            with zipfile.ZipFile(wheels[0]) as z:
                z.extractall(
                    stage,
                    [
                        n
                        for n in z.namelist()
                        if n.startswith(("executorch/lib/", "executorch/include/", "executorch/share/"))
                    ],
                )
            (stage / "VERSION").write_text(version + "\n")
    return dest / "executorch"


@dataclass
class ProbeResult:
    sme2_on: dict
    sme2_off: dict

    @property
    def ok(self) -> bool:
        return self.sme2_on["sme2"] and not self.sme2_off["sme2"]


def probe(root: DataRoot, qemu: Path) -> ProbeResult:
    """Compile a HWCAP2 reader for aarch64 and run it under both CPU settings."""

    probe_bin = root.tools / "hwcap2-probe"
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "probe.c"
        src.write_text(PROBE_C)
        proc = subprocess.run(
            [shutil.which(CROSS_CC) or CROSS_CC, "-O2", "-o", str(probe_bin), str(src)], capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise SetupError(
                f"cannot compile the aarch64 probe: {proc.stderr.strip()[-300:]}", "install g++-aarch64-linux-gnu"
            )
    out = {}
    for sme2 in (True, False):
        proc = subprocess.run(
            [str(qemu), "-L", str(SYSROOT), *cpu_args(sme2), str(probe_bin)], capture_output=True, text=True, timeout=60
        )
        if proc.returncode != 0:
            raise SetupError(
                f"the probe failed under {qemu} {' '.join(cpu_args(sme2))}: {proc.stderr.strip()[-300:]}",
                "check the QEMU binary and the aarch64 sysroot",
            )
        out[sme2] = {"hwcap2": int(proc.stdout.strip()), **conditions.parse_hwcap2(int(proc.stdout.strip()))}
    return ProbeResult(out[True], out[False])


def setup(root: DataRoot, progress=None) -> dict:
    """Obtain and prove the emulated SME2 toolchain; writes tools/setup.json and returns it."""
    say = progress or (lambda m: None)
    if not platforms.HOST_PLATFORM.startswith("linux"):
        raise SetupError(
            f"the emulated SME2 targets need Linux (qemu-user and an aarch64 sysroot); this is {platforms.HOST_PLATFORM}",
            "nothing to set up on a Mac: an Apple M4 is itself an SME2 CPU (profile host.sme2-on); for SME2 off on it, "
            "`sme2 source fetch` then a source-recipe target (docs/targets.md)",
        )
    say("looking for QEMU >= 10.1")
    qemu = find_qemu(root) or fetch_qemu(root, say)
    cxx = ensure_cross_compiler(say)
    et_root = ensure_aarch64_wheel(root, say)
    say("probing HWCAP2 under -cpu max and -cpu max,sme=off")
    result = probe(root, qemu)
    if not result.ok:
        raise SetupError(
            f"QEMU {qemu} does not switch SME2 as expected: sme2-on probe {result.sme2_on}, sme2-off probe {result.sme2_off}",
            "use QEMU >= 10.1 (set SME2_QEMU)",
        )
    info = {
        "qemu": str(qemu),
        "qemu_version": ".".join(map(str, qemu_version(qemu))),
        "cross_cxx": cxx,
        "sysroot": str(SYSROOT),
        "executorch_aarch64": str(et_root),
        "probe": {"sme2-on": result.sme2_on, "sme2-off": result.sme2_off},
    }
    atomic.write_json(root.tools / SETUP_FILE, info)
    return info


def load_setup(root: DataRoot) -> dict | None:
    f = root.tools / SETUP_FILE
    return json.loads(f.read_text()) if f.exists() else None
