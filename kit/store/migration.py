"""`sme2 warehouse migrate`: into the lab's DuckLake, once, what earlier releases kept elsewhere:
this host's local warehouse (every run the lake lacks, published as usual, a transaction each) and
the shared Parquet store of earlier releases (kit.store.legacy_store: its committed runs, each
once, in one transaction). Running it again adds nothing."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

from kit.core.errors import WarehouseError
from kit.store.legacy_store import LegacyStore
from kit.store.shared import LAKE, LOCAL_ONLY, PUBLISH_ID, PUBLISHED, SharedStore, _local_schema, _retrying


def migrate(wh, store: SharedStore, legacy: Path | None = None, say=None) -> dict:
    say = say or (lambda m: None)
    wh.ensure()
    say("publishing this host's runs the lake lacks")
    published = wh.publish()
    added = 0
    if legacy is not None:
        old = LegacyStore(legacy)
        if not old.exists():
            raise WarehouseError(
                f"{legacy} holds no Parquet store of schema v{old.data.name[1:]} (no {old.data / 'runs'} files)",
                "give the folder $SME2_SHARED_STORE pointed at before (the one with v<N>/runs/ in it)",
            )
        with wh.write() as conn:
            store.attach(conn)
            local = _local_schema(conn)
            _retrying(lambda: store._ensure_tables(conn, local), conn)
            old.prepare(conn)
            publish_id = f"migrated-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{secrets.token_hex(4)}"
            conn.execute(
                f"CREATE OR REPLACE TEMP TABLE _legacy_new AS SELECT run_id FROM _legacy_runs "
                f"WHERE run_id NOT IN (SELECT run_id FROM {LAKE}.{store.schema}.runs)"
            )
            added = conn.execute("SELECT count(*) FROM _legacy_new").fetchone()[0]
            say(f"moving {added} run(s) of the Parquet store at {legacy}")

            def once() -> None:
                conn.execute("BEGIN TRANSACTION")
                for table in PUBLISHED:
                    if not old.has_files(table):
                        continue
                    keep = " AND ".join(f"c <> '{name}'" for name in LOCAL_ONLY)  # old files may lack them
                    source = old.rows_sql(table)
                    conn.execute(
                        f"INSERT INTO {LAKE}.{store.schema}.{table} BY NAME SELECT COLUMNS(c -> {keep}), ? AS {PUBLISH_ID} "
                        f"FROM ({source}) WHERE run_id IN (SELECT run_id FROM _legacy_new)",
                        [publish_id],
                    )
                conn.execute("COMMIT")

            if added:
                _retrying(once, conn)
    return {"local_published": len(published), "legacy_runs_added": int(added), "lake_runs": len(store.run_ids())}
