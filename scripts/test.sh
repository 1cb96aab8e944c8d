#!/usr/bin/env bash
# Set up this machine and run the tests. Tiers (markers in pyproject.toml, see tests/conftest.py):
#   ./scripts/test.sh          full tier (CI, every push): real exports, runner builds, QEMU runs,
#                              instruction counts, an sshd on loopback, a Dagster instance and
#                              webserver, headless Chromium, the lab's lake on a real PostgreSQL
#                              (-m "not casestudy and not nightly")
#   ./scripts/test.sh --fast   fast tier: -m "not qemu and not ssh and not browser and not slow and
#                              not casestudy and not nightly"; no QEMU set-up, no root needed
#   ./scripts/test.sh --nightly   the nightly tier: the case-study models exported in every dtype and
#                              run on the emulated pair, every learning-path block in order, the
#                              device lab across hosts (-m "casestudy or nightly"; ~40 min cold)
#   ./scripts/test.sh --case-studies   only the case studies (-m casestudy)
# Any other argument goes to pytest (e.g. -k, -x, a test file).
set -euo pipefail
cd "$(dirname "$0")/.."
FAST_TIER="not qemu and not ssh and not browser and not slow and not casestudy and not nightly"
FULL_TIER="not casestudy and not nightly"
tier=full
args=()
export SME2_TEST_EXTRA=1  # scripts/setup.sh installs the `test` extra (pytest, xdist, pillow, hypothesis)
for a in "$@"; do
  case "$a" in
    --fast) tier=fast ;;
    --case-studies) tier=casestudy ;;
    --nightly) tier=nightly ;;
    *) args+=("$a") ;;
  esac
done
case "$tier" in
  fast) SME2_SKIP_EMULATOR=1 bash scripts/setup.sh; args=(-m "$FAST_TIER" "${args[@]}") ;;
  casestudy) bash scripts/setup.sh; args=(-m casestudy "${args[@]}") ;;
  nightly) bash scripts/setup.sh; args=(-m "casestudy or nightly" "${args[@]}") ;;
  *) bash scripts/setup.sh; args=(-m "$FULL_TIER" "${args[@]}") ;;
esac
# The tests' processes keep bytecode caches (pytest's rewritten test modules included): with
# PYTHONDONTWRITEBYTECODE set, each of the hundreds of sme2 subprocesses compiled the kit again.
unset PYTHONDONTWRITEBYTECODE
export SME2_TOOLS="$PWD/.sme2/tools"  # reuse the QEMU and aarch64 wheel sme2 setup fetched
# Exports cached by content hash (model package files, dtype, size, versions, export flags) across
# test sessions: a warm cache skips lowering, which is most of the suite's time (kit/export/cache.py).
export SME2_EXPORT_CACHE="${SME2_EXPORT_CACHE:-$HOME/.cache/sme2/exports}"
# -n auto: one pytest worker per core (at most 4: each worker makes its own session fixtures), a
# test file per worker at a time (--dist loadfile) so a file's shared fixtures are made once; the
# export cache's per-key lock lets a second worker restore an export the first one is lowering.
# --no-loadscope-reorder keeps tests/conftest.py's order: the longest files start first; files that
# share an expensive session fixture are one work unit there (SAME_WORKER), so it is made once.
# --durations: the slowest tests in every log, CI included (the tier is kept under 40 minutes).
python3 -m pytest -q -n auto --maxprocesses 4 --dist loadfile --no-loadscope-reorder --durations=25 "${args[@]}"
