"""Stage 8, the DuckDB warehouse: schema and migrations, connections, ingestion of run folders,
the user-SQL guard, the named queries and the per-run views the assets show. SQL lives here."""

__all__ = [  # the sub-package's public modules: `from kit.store import *`, or import each by name
    "connection",
    "contents",
    "current",
    "extensions",
    "history",
    "ingest",
    "legacy_store",
    "migration",
    "queries",
    "recovery",
    "runrows",
    "runs",
    "runwriter",
    "schema",
    "shared",
    "usersql",
    "variant",
    "views",
    "warehouse",
]
