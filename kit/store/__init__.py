"""Stage 8, the DuckDB warehouse: schema and migrations, connections, ingestion of run folders,
the user-SQL guard and the named queries. SQL lives here."""
