#!/usr/bin/env bash
# Set up this machine and profile the bundled default model on the host; prints where results are.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== Profiling the default model (tiny_seg) on the host"
sme2 profile --model tiny_seg --dtype fp32,int8 --target host.sme2-off "$@"
