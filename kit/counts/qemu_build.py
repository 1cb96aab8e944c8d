"""`sme2 setup --counts`: a qemu-aarch64 that loads TCG plugins, and our counting plugin built for it.

The static qemu-user that `sme2 setup` fetches cannot load plugins, so this one is built from
QEMU's source (linux-user, aarch64 only, plugins on): Debian's source package, fetched from the
Debian archive this machine's apt already uses and checked against a pinned sha256 (else, when
the pinned release has left the archive, whatever Debian testing serves, verified by apt).

One source fix is applied: QEMU's SME ZA load/store helpers assert in user mode when a plugin
watches memory (plugins make every page take the slow path, which those helpers only allow in
system mode), so a counting run of an SME2 kernel would abort. The fix lets them take the slow
path, which is correct in user mode too.

The build (about 3-4 minutes on 2 cores) is cached by content (source, fix, configure flags) in
`$SME2_BUILD_CACHE` (default ~/.cache/sme2/builds) and shared by every data root and test session
of this machine; each data root's tools folder gets a copy, beside the static QEMU, and its own
plugin build (seconds) from kit/counts/sme2_counts.c."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from kit.core import atomic, environment
from kit.core.home import DataRoot
from kit.core.locks import file_lock
from kit.counts import plugin_log
from kit.devices import toolsetup
from kit.devices.toolsetup import SetupError
from kit.devices.transports.qemu import cpu_args

CACHE_ENV = "SME2_BUILD_CACHE"
PLUGIN_SOURCE = Path(__file__).with_name("sme2_counts.c")
TOOLS_DIR = "qemu-counting"
MANIFEST = "counting.json"

# Debian's source of QEMU 11.1.1 (pool/main/q/qemu/), sha256 from its signed .dsc.
PINNED_SOURCE = ("qemu_11.1.1+ds.orig.tar.xz", "0b1376e75dbe3e2fea4e408f8669f88a723f419f36a5b7d74cc6a4cfe07e4f5e")
CONFIGURE = [
    "--target-list=aarch64-linux-user",
    "--enable-plugins",
    "--disable-system",
    "--disable-tools",
    "--disable-docs",
    "--disable-rust",
    "--disable-werror",
    "--disable-install-blobs",  # Debian's +ds source drops the firmware blobs
]
# Build dependencies: what must be found, and the Debian package that provides it.
BUILD_DEPS = {
    "cc": "gcc",
    "pkg-config": "pkg-config",
    "ninja": "ninja-build",
    "dtc": "device-tree-compiler",  # pc-bios/dtb of the +ds source needs it at configure time
    "glib-2.0": "libglib2.0-dev",
}
# QEMU's configure wants these in its Python (Debian 12's meson is too old): from PyPI.
BUILD_PYTHON_PACKAGES = ["meson>=1.5", "pycotap>=1.1"]
_SME_FIX_FROM = "#ifdef CONFIG_USER_ONLY\n        g_assert_not_reached();\n#else\n"
_SME_FIX_TO = "#if 1 /* sme2: a plugin's memory callbacks take the slow path in user mode too */\n"
_SME_FIX_FILE = "target/arm/tcg/sme_helper.c"


@dataclass
class CountingTools:
    qemu: Path
    plugin: Path
    manifest: dict


def missing_build_deps() -> list[str]:
    """Debian packages whose programs or libraries the QEMU build needs and this machine lacks."""
    missing = []
    for what, package in BUILD_DEPS.items():
        if what == "glib-2.0":
            found = bool(shutil.which("pkg-config")) and (
                subprocess.run(["pkg-config", "--exists", "glib-2.0"], capture_output=True).returncode == 0
            )
        else:
            found = bool(shutil.which(what))
        if not found:
            missing.append(package)
    return missing


def ensure_build_deps(progress=None) -> None:
    missing = missing_build_deps()
    if missing and toolsetup.can_apt_install():
        toolsetup.apt_install(missing, progress)
        missing = missing_build_deps()
    if missing:
        raise SetupError(
            f"building the counting QEMU needs {', '.join(missing)}, which this machine lacks",
            f"as root: apt-get install {' '.join(missing)}; then run: sme2 setup --counts",
        )


def _download(url: str, dest: Path, sha256: str | None) -> bool:
    """Fetch url to dest; False if the archive does not have it (404). A wrong checksum raises."""
    try:
        with urllib.request.urlopen(url, timeout=120) as r, open(dest, "wb") as f:
            shutil.copyfileobj(r, f, 1 << 20)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return False
        raise SetupError(f"downloading {url} failed: HTTP {e.code}", "check access to the Debian archive") from e
    except (urllib.error.URLError, OSError) as e:
        raise SetupError(f"downloading {url} failed: {e}", "check access to the Debian archive") from e
    if sha256 and atomic.sha256_file(dest) != sha256:
        raise SetupError(
            f"{dest.name} from {url} does not have the pinned sha256 {sha256}",
            "the archive served a different file: report it; do not build from it",
        )
    return True


def fetch_source(folder: Path, progress=None) -> tuple[Path, str]:
    """QEMU's source tarball into `folder`: the pinned release, else Debian testing's (apt checks
    it against the signed index). Returns (tarball, its sha256)."""
    say = progress or (lambda m: None)
    uri, keyring = toolsetup.apt_archive_uri()
    name, sha = PINNED_SOURCE
    url = f"{uri}/pool/main/q/qemu/{name.replace('+', '%2B')}"
    say(f"qemu source: {url}")
    if _download(url, folder / name, sha):
        return folder / name, sha
    say("qemu source: the pinned release is gone from the archive; taking Debian testing's")
    apt_dir = folder / "apt"
    opts = toolsetup.private_apt(apt_dir, f"deb-src {toolsetup.signed_by(keyring)}{uri} testing main")
    for argv in (["apt-get", *opts, "update"], ["apt-get", *opts, "source", "--download-only", "qemu"]):
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=folder)
        if proc.returncode != 0:
            raise SetupError(
                f"fetching QEMU's source from Debian testing failed ({argv[-1]}): {proc.stderr.strip()[-400:]}",
                "check access to the Debian archive, or set SME2_BUILD_CACHE to a folder holding a finished build",
            )
    tarballs = sorted(folder.glob("qemu_*.orig.tar.*"))
    if not tarballs:
        raise SetupError("apt-get source produced no QEMU tarball", "check access to the Debian archive")
    return tarballs[0], atomic.sha256_file(tarballs[0])


def build_key(source_sha256: str) -> str:
    h = hashlib.sha256()
    for part in (source_sha256, _SME_FIX_FROM, _SME_FIX_TO, *CONFIGURE):
        h.update(part.encode() + b"\0")
    return h.hexdigest()[:16]


def _run_logged(argv: list[str], cwd: Path, log, what: str, env=None, on_line=None) -> None:
    """Run a build step, its output into `log`; a failure names the step and the log's last lines."""
    with subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as proc:
        tail: list[str] = []
        for line in proc.stdout:
            log.write(line)
            tail = (tail + [line.rstrip()])[-15:]
            if on_line:
                on_line(line)
        rc = proc.wait()
    if rc != 0:
        raise SetupError(
            f"{what} failed (exit {rc}):\n" + "\n".join(tail),
            f"the full log is {log.name}; a missing package is named near its end",
        )


def apply_sme_fix(src: Path) -> bool:
    """The user-mode SME load/store fix (module docstring); False when this source no longer needs it."""
    f = src / _SME_FIX_FILE
    text = f.read_text()
    if _SME_FIX_FROM not in text:
        return False
    f.write_text(text.replace(_SME_FIX_FROM, _SME_FIX_TO))
    return True


def _complete(build: Path) -> bool:
    return (build / "build.json").is_file() and (build / "bin" / "qemu-aarch64").is_file()


def build_qemu(progress=None, count=None) -> Path:
    """The cached plugin-capable QEMU build (building it first if needed); returns its folder
    (bin/qemu-aarch64, include/qemu-plugin.h, build.json). `count(done, total)` reports progress."""
    say = progress or (lambda m: None)
    cache = environment.build_cache()
    cache.mkdir(parents=True, exist_ok=True)
    with file_lock(cache / "qemu.lock"):  # two sessions building at once: the second waits, then reuses
        pinned = cache / f"qemu-{build_key(PINNED_SOURCE[1])}"
        if _complete(pinned):
            return pinned
        with tempfile.TemporaryDirectory(prefix="sme2-qemu-src-", dir=cache) as tmp:
            t = Path(tmp)
            tarball, sha = fetch_source(t, say)
            final = cache / f"qemu-{build_key(sha)}"
            if _complete(final):
                return final
            ensure_build_deps(say)
            say(f"qemu source: unpacking {tarball.name}")
            (t / "src").mkdir()
            # tar(1): Python's tarfile takes minutes over QEMU's 300 MB of sources
            proc = subprocess.run(["tar", "-xf", str(tarball), "-C", str(t / "src")], capture_output=True, text=True)
            if proc.returncode != 0:
                raise SetupError(f"cannot unpack {tarball.name}: {proc.stderr.strip()[-300:]}", "check free disk space")
            src = next(p for p in (t / "src").iterdir() if (p / "configure").is_file())
            fixed = apply_sme_fix(src)
            started = time.time()
            venv = t / "venv"
            log_path = cache / "qemu-build.log"
            with open(log_path, "w") as log:
                say("qemu build: meson into a private virtual environment")
                _run_logged([sys.executable, "-m", "venv", str(venv)], t, log, "creating the build venv")
                _run_logged(
                    [
                        str(venv / "bin" / "python"),
                        "-m",
                        "pip",
                        "install",
                        "-q",
                        "--disable-pip-version-check",
                        *BUILD_PYTHON_PACKAGES,
                    ],
                    t,
                    log,
                    "installing meson and pycotap from PyPI",
                )
                build = src / "build"
                build.mkdir()
                say("qemu build: configure (aarch64-linux-user, plugins)")
                _run_logged(
                    [str(src / "configure"), f"--python={venv / 'bin' / 'python'}", *CONFIGURE],
                    build,
                    log,
                    "QEMU's configure",
                )
                step = re.compile(r"^\[(\d+)/(\d+)\]")

                def on_line(line: str) -> None:
                    m = step.match(line)
                    if m and count:
                        count(int(m.group(1)), int(m.group(2)))

                say("qemu build: compiling")
                jobs = str(max(1, os.cpu_count() or 1))
                _run_logged(["ninja", "-j", jobs, "qemu-aarch64"], build, log, "compiling QEMU", on_line=on_line)
            with atomic.staged_dir(final) as stage:
                (stage / "bin").mkdir()
                (stage / "include").mkdir()
                shutil.copy2(build / "qemu-aarch64", stage / "bin" / "qemu-aarch64")
                if shutil.which("strip"):
                    subprocess.run(["strip", str(stage / "bin" / "qemu-aarch64")], capture_output=True)
                shutil.copy2(src / "include" / "plugins" / "qemu-plugin.h", stage / "include" / "qemu-plugin.h")
                atomic.write_json(
                    stage / "build.json",
                    {
                        "source": tarball.name,
                        "source_sha256": sha,
                        "sme_user_mode_fix": fixed,
                        "configure": CONFIGURE,
                        "build_seconds": round(time.time() - started, 1),
                        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    },
                )
            return final


def compile_plugin(include: Path, out: Path) -> None:
    """Our plugin, against the QEMU build's qemu-plugin.h (glib's headers from pkg-config)."""
    glib = subprocess.run(["pkg-config", "--cflags", "glib-2.0"], capture_output=True, text=True)
    if glib.returncode != 0:
        raise SetupError(
            "glib's headers are not found (pkg-config glib-2.0)", "as root: apt-get install libglib2.0-dev"
        )
    argv = ["cc", "-shared", "-fPIC", "-O2", "-Wall", "-Wno-unused-parameter", f"-I{include}"]
    argv += [*glib.stdout.split(), "-o", str(out), str(PLUGIN_SOURCE)]
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SetupError(f"compiling the counting plugin failed: {proc.stderr.strip()[-600:]}", "report it")


# An aarch64 program whose SME instructions are known: PROBE_LOOPS times SMSTART, ZERO {ZA}, PTRUE,
# LD1W, two FMOPA, ST1W (a ZA slice), SMSTOP. Encoded with .inst: Debian 12's GCC has no SME.
PROBE_LOOPS = 100
PROBE_C = (
    r"""
float buf[1024] __attribute__((aligned(64)));
int main(void) {
  for (int i = 0; i < %d; i++) {
    register float *p asm("x0") = buf;
    __asm__ volatile(".inst 0xd503477f\n.inst 0xc00800ff\nptrue p0.s\nld1w {z0.s}, p0/z, [x0]\n"
                     ".inst 0x80800000\n.inst 0x80800001\nmov w12, #0\n.inst 0xe0bf0000\n.inst 0xd503467f\n"
                     :: "r"(p) : "memory", "p0", "z0", "w12");
  }
  return 0;
}
"""
    % PROBE_LOOPS
)


def prove(tools: "CountingTools") -> dict:
    """Run the probe under the counting QEMU: every SME instruction it retires must be counted in
    its class, in streaming mode, with the bytes its ZA store wrote. Returns the probe's totals."""
    with tempfile.TemporaryDirectory(prefix="sme2-count-probe-") as tmp:
        t = Path(tmp)
        (t / "probe.c").write_text(PROBE_C)
        cc = shutil.which(toolsetup.CROSS_CC) or toolsetup.CROSS_CC
        proc = subprocess.run(
            [cc, "-O1", "-march=armv9-a+sve2", "-o", str(t / "probe"), str(t / "probe.c")],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise SetupError(f"cannot compile the counting probe: {proc.stderr.strip()[-300:]}", "run: sme2 setup")
        out = t / "counts.txt"
        argv = [str(tools.qemu), "-L", str(toolsetup.SYSROOT), *cpu_args(True)]
        argv += ["-plugin", f"{tools.plugin},out={out}", str(t / "probe")]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise SetupError(f"the counting probe failed under {tools.qemu}: {proc.stderr.strip()[-400:]}", "report it")
        log = plugin_log.read(out)
    total = log.totals[0]
    got = dict(zip(plugin_log.CLASSES, total["counts"]))
    streaming = dict(zip(plugin_log.CLASSES, total["streaming"]))
    want = {"sme_outer": 2 * PROBE_LOOPS, "sme_za": PROBE_LOOPS, "sme_mem": PROBE_LOOPS}
    wrong = {c: (got[c], streaming[c], n) for c, n in want.items() if got[c] != n or streaming[c] != n}
    if wrong:
        raise SetupError(
            f"the counting plugin miscounts the probe's SME instructions (class: counted, in streaming mode, expected): {wrong}",
            "report it with the output of: sme2 setup --counts --json",
        )
    return {"counts": got, "streaming": streaming, "bytes": total["bytes"]}


def setup_counting(root: DataRoot, progress=None, count=None) -> CountingTools:
    """`sme2 setup --counts`: the cached QEMU build copied into the tools folder, the plugin
    compiled there, and both proved on a probe that counts a few known instructions."""
    say = progress or (lambda m: None)
    built = build_qemu(say, count)
    plugin_sha = atomic.sha256_file(PLUGIN_SOURCE)
    dest = root.tools / TOOLS_DIR
    current = load_counting(root)
    if current and current.manifest.get("build") == built.name and current.manifest.get("plugin_sha256") == plugin_sha:
        return current
    with atomic.staged_dir(dest) as stage:
        (stage / "bin").mkdir()
        (stage / "lib").mkdir()
        shutil.copy2(built / "bin" / "qemu-aarch64", stage / "bin" / "qemu-aarch64")
        say("counting plugin: compiling kit/counts/sme2_counts.c")
        compile_plugin(built / "include", stage / "lib" / "libsme2_counts.so")
        manifest = {
            "build": built.name,
            **json.loads((built / "build.json").read_text()),
            "plugin_source": str(PLUGIN_SOURCE),
            "plugin_sha256": plugin_sha,
        }
        tools = CountingTools(stage / "bin" / "qemu-aarch64", stage / "lib" / "libsme2_counts.so", manifest)
        say("counting plugin: proving it on a probe of known SME instructions")
        manifest["probe"] = prove(tools)
        atomic.write_json(stage / MANIFEST, manifest)
    tools = load_counting(root)
    if tools is None:
        raise SetupError("the counting tools were not installed", "re-run: sme2 setup --counts")
    return tools


def load_counting(root: DataRoot) -> CountingTools | None:
    """The counting QEMU and plugin of this data root, None when `sme2 setup --counts` has not run."""
    dest = root.tools / TOOLS_DIR
    qemu, plugin, manifest = dest / "bin" / "qemu-aarch64", dest / "lib" / "libsme2_counts.so", dest / MANIFEST
    if not (qemu.is_file() and plugin.is_file() and manifest.is_file()):
        return None
    try:
        return CountingTools(qemu, plugin, json.loads(manifest.read_text()))
    except (OSError, ValueError):
        return None
