#!/usr/bin/env bash
# Set up this machine, then materialize the whole asset graph for the bundled default model
# (tiny_seg, fp32 and int8) on the host and the emulated SME2 pair, into ./.sme2; prints the
# SME2 tables, where the warehouse and reports are, and how to open the Dagster UI.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== Materializing the asset graph for tiny_seg (sme2 pipeline)"
SME2_TOOLS="$PWD/.sme2/tools" sme2 pipeline --model tiny_seg --dtype fp32,int8 "$@"
