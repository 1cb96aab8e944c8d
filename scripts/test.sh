#!/usr/bin/env bash
# Set up this machine and run the test suite (real exports, runner builds and runs; a few minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
python3 -m pytest -q "$@"
