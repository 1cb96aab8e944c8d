"""Stage 8, the DuckDB warehouse: schema and migrations, connections, ingestion of run folders,
the user-SQL guard, the named queries and the per-run views the assets show. SQL lives here."""
