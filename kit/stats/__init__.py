"""Stage 6, numbers from one run: robust statistics, operator categories, the per-run summary
written beside the trace (Arm-kit compatible files)."""
