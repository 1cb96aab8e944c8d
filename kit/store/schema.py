"""The warehouse schema: tables, the `current_runs` view, and migrations applied in order (table
`schema_version` records how far a file has come)."""

from __future__ import annotations

SCHEMA_VERSION = 1

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
]

TABLES = ("runs", "latency_samples", "op_events", "op_stats", "category_stats", "kernels", "artifacts", "regressions")


def migrate(conn) -> int:
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_at TIMESTAMP NOT NULL)")
    current = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]
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
