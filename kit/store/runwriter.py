"""How one run's rows go into the warehouse over an open connection, inside the caller's
transaction: Arrow tables with dictionary-encoded strings, op events normalized into slots and
narrow time rows (schema v2), one INSERT per table. The speed of ingestion is decided here (see
docs/benchmarks.md), apart from when and in which transaction a Warehouse writes."""

from __future__ import annotations

import contextlib

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from kit.store.connection import first_row, scalar
from kit.store.runrows import RunRows

# The columns that describe an event (one op_event_slots row per distinct combination in a run).
SLOT_COLUMNS = [
    "op_type", "event_name", "delegated", "backend", "instruction_id", "category", "fine_category", "kernel_hint",
    "module",
]  # fmt: skip


class RunWriter:
    """Writes RunRows over one open connection, inside the caller's transaction. Tables go in as
    Arrow with dictionary-encoded strings (DuckDB scans those without a Python object per value);
    op events go in normalized (schema v2): each run's slots once, then narrow time rows. Every
    statement has a fixed cost that grows with the table's columns, not its rows, so a run is one
    statement per table and one lookup: a batch reads the stored run ids once, a single run asks
    for its own id and draws its run number in one query. Run numbers come from a sequence, so
    two connections of one process writing at once still never share one."""

    def __init__(self, conn, preload: bool = False):
        self.conn = conn
        # The connection holds the file's only write lock: nobody else adds runs meanwhile. A
        # batch reads the stored run ids once; a single run asks for its own id.
        self.stored = {r[0] for r in conn.execute("SELECT run_id FROM runs").fetchall()} if preload else None

    def rollback(self) -> None:
        # A failed COMMIT (e.g. a full disk) has already rolled back, and DuckDB answers the
        # ROLLBACK with "no transaction is active": that must not mask the real error.
        with contextlib.suppress(duckdb.Error):
            self.conn.execute("ROLLBACK")

    def write(self, rows: "RunRows") -> bool:
        """Append one run's rows; False (nothing written) if the run is already stored."""
        run_id = rows.run["run_id"]
        if self.stored is not None:  # a batch: the stored ids were read once
            if run_id in self.stored:
                return False
            run_no = scalar(self.conn, "SELECT nextval('run_no_seq')")
        else:
            present, run_no = first_row(
                self.conn, "SELECT (SELECT count(*) FROM runs WHERE run_id = ?), nextval('run_no_seq')", [run_id]
            )
            if present:
                return False  # (the number drawn stays unused: gaps are harmless)
        slots, times = event_tables(rows.events, run_no)
        for table, frame in (
            ("runs", _run_row({**rows.run, "run_no": run_no})),
            ("latency_samples", rows.samples),
            ("op_event_slots", slots),
            ("op_event_times", times),
            ("op_stats", rows.op_stats),
            ("category_stats", rows.category_stats),
            ("kernels", rows.kernels),
            ("artifacts", rows.artifacts),
            ("op_event_counts", rows.counts),
        ):
            if frame is not None and len(frame):
                self._insert(table, frame)
        if self.stored is not None:
            self.stored.add(run_id)  # not yet committed: a rollback ends the batch anyway
        return True

    def _insert(self, table: str, frame: pd.DataFrame | pa.Table) -> None:
        """One INSERT statement from Arrow. (Its fixed cost grows with the table's columns, not
        its rows: a 16-row op_stats costs about what 12,000 narrow event rows do; bound VALUES
        are no cheaper. That, times 8 tables, is the floor of a run's write.)"""
        arrow = frame if isinstance(frame, pa.Table) else _arrow(frame)
        cols = ", ".join(f'"{c}"' for c in arrow.column_names)
        self.conn.register("_frame", arrow)
        try:
            self.conn.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _frame")
        finally:
            # In an aborted transaction this fails too; the insert's own error is the one to raise.
            with contextlib.suppress(duckdb.Error):
                self.conn.unregister("_frame")


DICTIONARY_ROWS = 256  # string columns of tables with more rows than this are dictionary-encoded


def _arrow_column(values, encode: bool) -> pa.Array | pa.ChunkedArray:
    """One pandas column as Arrow without pandas' per-frame conversion machinery: pandas strings
    are Arrow already (zero copy), numbers are numpy; NaN becomes NULL, as DuckDB reads pandas."""
    col = pa.array(values.array if values.dtype == "str" else values, from_pandas=True)
    if encode and (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        return col.dictionary_encode()  # a run repeats its run id and names on every row
    return col


def _arrow(frame: pd.DataFrame) -> pa.Table:
    """A DataFrame as Arrow; string columns dictionary-encoded where the table is long enough for
    repetition to pay (encoding a 20-row op_stats costs more than it saves)."""
    encode = len(frame) > DICTIONARY_ROWS
    try:
        return pa.table({name: _arrow_column(frame[name], encode) for name in frame.columns})
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):  # mixed object columns: pandas' way
        table = pa.Table.from_pandas(frame, preserve_index=False)
        return pa.table({n: _arrow_column(c.to_pandas(), encode) for n, c in zip(table.column_names, table.columns)})


def _run_row(run: dict) -> pa.Table:
    """The runs row straight from its dict (a one-row DataFrame costs ten times more), NaN as NULL."""

    def value(v):
        if isinstance(v, float) and v != v:
            return None
        return pd.Timestamp(v) if isinstance(v, np.datetime64) else v

    try:
        return pa.Table.from_pylist([{k: value(v) for k, v in run.items()}])
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):  # a value Arrow cannot infer: pandas' way
        return _arrow(pd.DataFrame([run]))


def event_tables(events: pd.DataFrame, run_no: int) -> tuple[pa.Table | None, pa.Table | None]:
    """A run's op events (the wide op_events columns) as its op_event_slots and op_event_times rows.
    A slot is a distinct event description. Every iteration of a program emits the same events in
    the same order, so the description at a position (seq) is normally the same in all iterations:
    that is checked column by column in Arrow and then seq is the slot. When it does not hold,
    each distinct description gets its own slot (slower, same rows)."""
    if events is None or len(events) == 0:
        return None, None
    # Rows from before modules were attributed (and crafted rows) have no module: "".
    described = pa.table(
        {
            c: _arrow_column(events[c] if c in events else pd.Series([""] * len(events)), encode=False)
            for c in SLOT_COLUMNS
        }
    )
    _, first, slot = np.unique(events["seq"].to_numpy(), return_index=True, return_inverse=True)
    same_at_seq = first[slot]
    if not all(
        col.null_count == 0 and pc.all(pc.equal(col, col.take(same_at_seq))).as_py() for col in described.columns
    ):
        key = np.zeros(len(events), np.int64)
        for col in SLOT_COLUMNS:
            codes, uniques = pd.factorize(described[col].to_pandas(), use_na_sentinel=False)
            key, _ = pd.factorize(key * (len(uniques) + 1) + codes)  # stays < len(events): no overflow
        slot, distinct = pd.factorize(key)
        first = np.zeros(len(distinct), np.int64)
        first[slot[::-1]] = np.arange(len(slot) - 1, -1, -1)  # first event of each slot
    slots = described.take(first)
    slots = pa.table(
        {
            "run_no": pa.array(np.full(len(first), run_no, np.int32)),
            "slot": pa.array(np.arange(len(first), dtype=np.int32)),
            **{name: col for name, col in zip(slots.column_names, slots.columns)},
        }
    )
    times = pa.table(
        {
            "run_no": pa.array(np.full(len(events), run_no, np.int32)),
            "iteration": pa.array(events["iteration"].to_numpy(np.int32)),
            "seq": pa.array(events["seq"].to_numpy(np.int32)),
            "slot": pa.array(np.asarray(slot, np.int32)),
            # NaN is NULL, as DuckDB reads pandas (a NaN duration is refused by NOT NULL)
            "start_us": pa.array(events["start_us"].to_numpy(np.float64), from_pandas=True),
            "duration_ms": pa.array(events["duration_ms"].to_numpy(np.float64), from_pandas=True),
        }
    )
    return slots, times
