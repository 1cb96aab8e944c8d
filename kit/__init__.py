"""The SME2 profiling kit: plain Python, no Dagster. Sub-packages in data-flow order; each imports
only from the ones above it (tests/test_structure.py holds the order and checks it):

    core       errors, validated names, the data root, atomic files, locks, platforms, settings
    models     model packages: spec, registry (native and Arm-kit), checkpoints
    devices    device inventory (devices.toml), targets, SME2 detection, transports, emulator set-up
    runners    runner binaries: toolchains, recipes (wheel, source, path), the C++ runner, invoking it
    trace      ETDump reading, program maps, kernel naming
    export     model package -> .pte + ETRecord + program map, numerically checked; .pte imports
    stats      robust statistics, operator categories, the per-run summary files
    counts     instruction counts of emulated runs per event (QEMU plugin), estimated cycles
    profile    sessions: timing + ETDump runs, interleaved SME2 on/off, run folders, experiment configs
    store      the DuckDB warehouse: schema, ingestion, user-SQL guard, named queries
    analysis   across runs: SME2 comparison, data movement, regressions, validation gates
    report     reports, charts, Perfetto traces, HUD export, Arm-kit import
    pipeline   the workflow cut along Dagster's partitions (shared by the CLI and the assets)
    skills     verification of the agent skills (`sme2 check`), the known-good regression check
    agent      the operations as typed tools, served over MCP (`sme2 mcp`)
    cli        the `sme2` command line
"""

__version__ = "0.1.0"
