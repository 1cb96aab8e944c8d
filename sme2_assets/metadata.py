"""Metadata in the forms Dagster draws: numbers (the Plots tab charts each numeric entry across
materializations) and tables (`TableMetadataValue`, with a schema), never numbers inside Markdown."""

from __future__ import annotations

import math
import re

import dagster as dg
import pandas as pd


def _kind(dtype) -> str:
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        return "int"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    return "string"


def _cell(value, kind: str):
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA or value is pd.NaT:
        return None
    if kind == "bool":
        return bool(value)
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    return str(value)


def table(df: pd.DataFrame, digits: int | None = 4) -> dg.TableMetadataValue:
    """A frame as a Dagster table (floats rounded to `digits`; NaN as empty)."""
    kinds = {c: _kind(df[c].dtype) for c in df.columns}
    schema = dg.TableSchema(columns=[dg.TableColumn(str(c), kinds[c]) for c in df.columns])
    records = []
    for row in df.itertuples(index=False):
        values = {}
        for c, v in zip(df.columns, row):
            cell = _cell(v, kinds[c])
            if kinds[c] == "float" and cell is not None and digits is not None:
                cell = round(cell, digits)
            values[str(c)] = cell
        records.append(dg.TableRecord(values))
    return dg.MetadataValue.table(records, schema)


def number(value, digits: int = 4) -> float | None:
    """A plain float for numeric metadata, rounded to `digits` decimals (the UI prints floats in
    full: 12.3796 reads, 12.379584000000001 does not); None for missing values, then left out."""
    if value is None or value is pd.NA:
        return None
    f = float(value)
    return None if math.isnan(f) else round(f, digits)


def slug(text: str) -> str:
    """A metadata key fragment: 'Data Movement' -> 'data_movement'."""
    return re.sub(r"[^a-z0-9]+", "_", str(text).lower()).strip("_")


def numbers(entries: dict) -> dict:
    """Drop entries whose value is missing, so every numeric key always holds a number."""
    return {k: v for k, v in entries.items() if v is not None}
