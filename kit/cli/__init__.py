"""The `sme2` command line, one module per command group (models, devices, profiling, warehouse,
analysis) over shared options in `common`; `main` assembles them with the plugged-in commands."""
