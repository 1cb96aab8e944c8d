#!/usr/bin/env bash
# Set up this machine and run the test suite: real exports, runner builds, QEMU runs, an sshd on
# loopback, a Dagster instance and webserver, headless Chromium (about 15 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export SME2_TOOLS="$PWD/.sme2/tools"  # reuse the QEMU and aarch64 wheel sme2 setup fetched
# Exports cached by content hash (model package files, dtype, size, versions, export flags) across
# test sessions: a warm cache skips lowering, which is most of the suite's time (kit/export/cache.py).
export SME2_EXPORT_CACHE="${SME2_EXPORT_CACHE:-$HOME/.cache/sme2/exports}"
python3 -m pytest -q "$@"
