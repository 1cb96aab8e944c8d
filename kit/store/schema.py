"""The warehouse schema: tables, the `current_runs` and `op_events` views, and migrations applied in
order (table `schema_version` records how far a file has come).

Operator events are most of the rows (iterations x events per run) and repeat the same names every
iteration, so since version 2 they are stored normalized: `op_event_slots` holds each run's
distinct event descriptions once (op type, names, category, kernel hint: a "slot"), and
`op_event_times` one narrow row per event (run number, iteration, seq, slot, start, duration).
The `op_events` view joins them back into the version-1 columns, so SQL over op_events is
unchanged. `runs.run_no` is the integer that stands for a run in the event tables (from the
sequence `run_no_seq`, so two writers never share one): a 4-byte key instead of a ~60-character run
id on every event row is what makes ingestion fast."""

from __future__ import annotations

import duckdb

SCHEMA_VERSION = 3

# One row per operator instance of a run (each `Convolution ... #1`, `#2` of each delegate call: an
# event's position in the iteration), with its percentiles over the measured iterations in ms
# (ETDump's resolution is a microsecond) and its module: Inspector's per-event rows, from SQL.
OP_INSTANCES_VIEW = """
    SELECT run_id, seq, any_value(op_type) AS op_type, any_value(event_name) AS event_name,
           any_value(instruction_id) AS instruction_id, any_value(delegated) AS delegated,
           any_value(category) AS category, any_value(module) AS module, count(*) AS iterations,
           quantile_cont(duration_ms, 0.1) AS p10_ms, median(duration_ms) AS p50_ms,
           quantile_cont(duration_ms, 0.9) AS p90_ms, avg(duration_ms) AS mean_ms
    FROM op_events GROUP BY run_id, seq
"""

# Instruction counts of emulated runs (kit.counts): per operator type of each run, its first counted
# execution (every counted execution retires the same instructions). Estimated cycles are
# estimates from emulation (the cost model named in cost_model), never hardware time.
OP_COUNTS_VIEW = """
    SELECT run_id, op_type, category, any_value(fine_category) AS fine_category, bool_or(delegated) AS delegated,
           count(*) AS instances, sum(instructions) AS instructions, sum(sme_instructions) AS sme_instructions,
           sum(simd_instructions) AS simd_instructions, sum(scalar_instructions) AS scalar_instructions,
           sum(memory_instructions) AS memory_instructions, sum(bytes_loaded) AS bytes_loaded,
           sum(bytes_stored) AS bytes_stored, sum(est_cycles) AS est_cycles, any_value(cost_model) AS cost_model
    FROM op_event_counts WHERE row_kind = 'operator' AND iteration = 0
    GROUP BY run_id, op_type, category
"""

# Each migration takes the schema from version i to i + 1.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE IF NOT EXISTS runs (
        run_id VARCHAR PRIMARY KEY, run_key VARCHAR NOT NULL, variant VARCHAR NOT NULL,
        model VARCHAR NOT NULL, dtype VARCHAR NOT NULL, backend VARCHAR NOT NULL, size VARCHAR NOT NULL,
        target VARCHAR NOT NULL, device VARCHAR NOT NULL, sme2 BOOLEAN NOT NULL, emulated BOOLEAN NOT NULL,
        threads INTEGER NOT NULL, runner VARCHAR NOT NULL, iterations INTEGER, warmup INTEGER,
        platform VARCHAR, transport VARCHAR, runner_sha256 VARCHAR, runner_recipe VARCHAR, pte_sha256 VARCHAR,
        started_at TIMESTAMP NOT NULL, finished_at TIMESTAMP, ingested_at TIMESTAMP NOT NULL,
        torch_version VARCHAR, executorch_version VARCHAR, cpu_model VARCHAR,
        e2e_median_ms DOUBLE, e2e_p10_ms DOUBLE, e2e_p90_ms DOUBLE, e2e_cv_percent DOUBLE,
        e2e_ci_low_ms DOUBLE, e2e_ci_high_ms DOUBLE, execute_median_ms DOUBLE, coverage DOUBLE,
        load_ms DOUBLE, first_inference_ms DOUBLE, peak_rss_kb BIGINT,
        n_samples INTEGER NOT NULL, n_op_events INTEGER NOT NULL, n_op_stats INTEGER NOT NULL,
        source VARCHAR NOT NULL, run_dir VARCHAR, conditions JSON, results JSON
    );
    CREATE TABLE IF NOT EXISTS latency_samples (
        run_id VARCHAR NOT NULL, kind VARCHAR NOT NULL, iteration INTEGER NOT NULL, latency_ms DOUBLE NOT NULL
    );
    CREATE TABLE IF NOT EXISTS op_events (
        run_id VARCHAR NOT NULL, iteration INTEGER NOT NULL, seq INTEGER NOT NULL, op_type VARCHAR NOT NULL,
        event_name VARCHAR, delegated BOOLEAN, backend VARCHAR, instruction_id INTEGER, category VARCHAR,
        fine_category VARCHAR, kernel_hint VARCHAR, start_us DOUBLE, duration_ms DOUBLE NOT NULL
    );
    CREATE TABLE IF NOT EXISTS op_stats (
        run_id VARCHAR NOT NULL, op_type VARCHAR NOT NULL, category VARCHAR, fine_category VARCHAR,
        delegated BOOLEAN, backend VARCHAR, kernel_hint VARCHAR, instances INTEGER, count INTEGER,
        median_ms DOUBLE, mean_ms DOUBLE, p10_ms DOUBLE, p90_ms DOUBLE, std_dev_ms DOUBLE, cv_percent DOUBLE,
        min_ms DOUBLE, max_ms DOUBLE, mad_ms DOUBLE, ci_low_ms DOUBLE, ci_high_ms DOUBLE, share_of_execute DOUBLE
    );
    CREATE TABLE IF NOT EXISTS category_stats (
        run_id VARCHAR NOT NULL, scheme VARCHAR NOT NULL, category VARCHAR NOT NULL, median_ms DOUBLE,
        p10_ms DOUBLE, p90_ms DOUBLE, cv_percent DOUBLE, ops INTEGER, share_of_execute DOUBLE,
        share_of_operators DOUBLE
    );
    CREATE TABLE IF NOT EXISTS kernels (
        run_id VARCHAR NOT NULL, op_type VARCHAR NOT NULL, kernel_family VARCHAR, dtype_tags VARCHAR,
        kleidiai BOOLEAN, sme2_only BOOLEAN, microkernel VARCHAR, isa VARCHAR, source VARCHAR
    );
    CREATE TABLE IF NOT EXISTS artifacts (
        run_id VARCHAR NOT NULL, kind VARCHAR NOT NULL, path VARCHAR NOT NULL, sha256 VARCHAR, bytes BIGINT
    );
    CREATE TABLE IF NOT EXISTS regressions (
        detected_at TIMESTAMP NOT NULL, run_id VARCHAR NOT NULL, run_key VARCHAR NOT NULL, scope VARCHAR NOT NULL,
        op_type VARCHAR, baseline_runs INTEGER, baseline_median_ms DOUBLE, new_median_ms DOUBLE, change DOUBLE,
        p_value DOUBLE, q_value DOUBLE, significant BOOLEAN, method VARCHAR, detail VARCHAR
    );
    CREATE OR REPLACE VIEW current_runs AS
        SELECT * FROM runs QUALIFY row_number() OVER (PARTITION BY run_key ORDER BY started_at DESC, run_id DESC) = 1;
    """,
    # 2: op_events normalized into op_event_slots + op_event_times (see the module docstring);
    # existing rows move over, each run numbered in start order.
    """
    ALTER TABLE runs ADD COLUMN run_no INTEGER;
    CREATE SEQUENCE run_no_seq START 1;  -- distinct numbers even for concurrent transactions
    UPDATE runs SET run_no = nextval('run_no_seq');
    CREATE TABLE op_event_slots (
        run_no INTEGER NOT NULL, slot INTEGER NOT NULL, op_type VARCHAR NOT NULL, event_name VARCHAR,
        delegated BOOLEAN, backend VARCHAR, instruction_id INTEGER, category VARCHAR, fine_category VARCHAR,
        kernel_hint VARCHAR
    );
    CREATE TABLE op_event_times (
        run_no INTEGER NOT NULL, iteration INTEGER NOT NULL, seq INTEGER NOT NULL, slot INTEGER NOT NULL,
        start_us DOUBLE, duration_ms DOUBLE NOT NULL
    );
    CREATE TEMP TABLE _slots AS
        SELECT r.run_no, d.*, CAST(row_number() OVER (PARTITION BY d.run_id ORDER BY d.first_seq, d.op_type) - 1 AS INTEGER) AS slot
        FROM (SELECT run_id, op_type, event_name, delegated, backend, instruction_id, category, fine_category,
                     kernel_hint, min(seq) AS first_seq
              FROM op_events GROUP BY ALL) d JOIN runs r USING (run_id);
    INSERT INTO op_event_slots
        SELECT run_no, slot, op_type, event_name, delegated, backend, instruction_id, category, fine_category, kernel_hint
        FROM _slots;
    INSERT INTO op_event_times
        SELECT s.run_no, e.iteration, e.seq, s.slot, e.start_us, e.duration_ms
        FROM op_events e JOIN _slots s ON e.run_id = s.run_id AND e.op_type = s.op_type
            AND e.event_name IS NOT DISTINCT FROM s.event_name AND e.delegated IS NOT DISTINCT FROM s.delegated
            AND e.backend IS NOT DISTINCT FROM s.backend AND e.instruction_id IS NOT DISTINCT FROM s.instruction_id
            AND e.category IS NOT DISTINCT FROM s.category AND e.fine_category IS NOT DISTINCT FROM s.fine_category
            AND e.kernel_hint IS NOT DISTINCT FROM s.kernel_hint
        ORDER BY s.run_no, e.iteration, e.seq;
    DROP TABLE _slots;
    DROP TABLE op_events;
    CREATE VIEW op_events AS
        SELECT r.run_id, t.iteration, t.seq, s.op_type, s.event_name, s.delegated, s.backend, s.instruction_id,
               s.category, s.fine_category, s.kernel_hint, t.start_us, t.duration_ms
        FROM op_event_times t JOIN op_event_slots s USING (run_no, slot) JOIN runs r USING (run_no);
    CREATE OR REPLACE VIEW current_runs AS
        SELECT * FROM runs QUALIFY row_number() OVER (PARTITION BY run_key ORDER BY started_at DESC, run_id DESC) = 1;
    """,
    # 3: instruction counts per ETDump event of counted (emulated) runs, and the op_counts view.
    """
    CREATE TABLE op_event_counts (
        run_id VARCHAR NOT NULL, iteration INTEGER NOT NULL, seq INTEGER NOT NULL, row_kind VARCHAR NOT NULL,
        op_type VARCHAR NOT NULL, event_name VARCHAR, delegated BOOLEAN, instruction_id INTEGER, category VARCHAR,
        fine_category VARCHAR, sme_outer BIGINT, sme_za BIGINT, sme_mem BIGINT, sve BIGINT, sve_mem BIGINT, simd BIGINT, simd_mem BIGINT,
        fp BIGINT, int BIGINT, int_mem BIGINT, branch BIGINT, system BIGINT, other BIGINT,
        streaming_sme_outer BIGINT, streaming_sme_za BIGINT, streaming_sme_mem BIGINT, streaming_sve BIGINT,
        streaming_sve_mem BIGINT, streaming_simd BIGINT, streaming_simd_mem BIGINT, streaming_fp BIGINT,
        streaming_int BIGINT, streaming_int_mem BIGINT, streaming_branch BIGINT, streaming_system BIGINT,
        streaming_other BIGINT, bytes_loaded BIGINT, bytes_stored BIGINT,
        instructions BIGINT NOT NULL, sme_instructions BIGINT, simd_instructions BIGINT, scalar_instructions BIGINT,
        memory_instructions BIGINT, est_cycles DOUBLE, est_compute_cycles DOUBLE, est_memory_cycles DOUBLE,
        cost_model VARCHAR
    );
    CREATE VIEW op_counts AS """
    + OP_COUNTS_VIEW
    + """;
    -- The nn.Module of each operator event (kit.trace.modules), and per-instance statistics.
    ALTER TABLE op_event_slots ADD COLUMN module VARCHAR;
    CREATE OR REPLACE VIEW op_events AS
        SELECT r.run_id, t.iteration, t.seq, s.op_type, s.event_name, s.delegated, s.backend, s.instruction_id,
               s.category, s.fine_category, s.kernel_hint, t.start_us, t.duration_ms, s.module
        FROM op_event_times t JOIN op_event_slots s USING (run_no, slot) JOIN runs r USING (run_no);
    CREATE VIEW op_instances AS """
    + OP_INSTANCES_VIEW
    + ";",
]

# What users query (sme2 sql, named queries): op_events is a view over the two event tables.
TABLES = (
    "runs",
    "latency_samples",
    "op_events",
    "op_stats",
    "category_stats",
    "kernels",
    "artifacts",
    "regressions",
    "op_event_counts",
    "op_counts",
    "op_instances",
)
# Where each of them is stored, for counting rows without the view's joins.
STORED_AS = {"op_events": "op_event_times", "op_counts": "op_event_counts", "op_instances": "op_event_times"}


def migrate(conn) -> int:
    try:  # the common case, one read: the file is already at the current version
        current = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]
    except duckdb.CatalogException:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at TIMESTAMP NOT NULL)")
        current = 0
    for version in range(current, len(MIGRATIONS)):
        conn.execute("BEGIN TRANSACTION")
        try:
            conn.execute(MIGRATIONS[version])
            conn.execute("INSERT INTO schema_version VALUES (?, now())", [version + 1])
            conn.execute("COMMIT")
        except Exception:
            conn.execute("ROLLBACK")
            raise
    return len(MIGRATIONS)
