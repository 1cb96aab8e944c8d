"""Stage 9, across runs: SME2 on/off comparison, data movement, regressions, validation gates."""
