"""The tensor file both runners read (inputs) and write (outputs): a small binary format a C++
program parses in thirty lines, so integer prompts and fp16 inputs reach every runner unchanged.

Layout (little-endian): b"SME2TNS1", u32 count, then per tensor: u32 scalar type (ExecuTorch
ScalarType code), u32 ndim, i64 dims[ndim], u64 nbytes, raw data."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from kit.core import atomic

MAGIC = b"SME2TNS1"

# ExecuTorch ScalarType codes <-> numpy dtypes.
SCALAR_TYPES = {
    0: np.uint8,
    1: np.int8,
    2: np.int16,
    3: np.int32,
    4: np.int64,
    5: np.float16,
    6: np.float32,
    7: np.float64,
    11: np.bool_,
}
CODES = {np.dtype(v): k for k, v in SCALAR_TYPES.items()}


def encode(arrays: list[np.ndarray]) -> bytes:
    parts = [MAGIC, struct.pack("<I", len(arrays))]
    for a in arrays:
        a = np.ascontiguousarray(a)
        code = CODES.get(a.dtype)
        if code is None:
            raise ValueError(f"unsupported tensor dtype {a.dtype}")
        data = a.tobytes()
        parts.append(struct.pack("<II", code, a.ndim))
        parts.append(struct.pack(f"<{a.ndim}q", *a.shape))
        parts.append(struct.pack("<Q", len(data)))
        parts.append(data)
    return b"".join(parts)


def decode(buf: bytes, source: str = "<bytes>") -> list[np.ndarray]:
    if buf[:8] != MAGIC:
        raise ValueError(f"{source} is not a tensor file (bad magic)")
    (count,) = struct.unpack_from("<I", buf, 8)
    pos, out = 12, []
    for _ in range(count):
        code, ndim = struct.unpack_from("<II", buf, pos)
        pos += 8
        dims = struct.unpack_from(f"<{ndim}q", buf, pos)
        pos += 8 * ndim
        (nbytes,) = struct.unpack_from("<Q", buf, pos)
        pos += 8
        if code not in SCALAR_TYPES or pos + nbytes > len(buf):
            raise ValueError(f"{source} is truncated or has an unknown scalar type {code}")
        arr = np.frombuffer(buf, dtype=SCALAR_TYPES[code], count=int(np.prod(dims)) if ndim else 1, offset=pos)
        out.append(arr.reshape(dims).copy())
        pos += nbytes
    return out


def save(path: Path, arrays: list[np.ndarray]) -> Path:
    return atomic.write_bytes(path, encode(arrays))


def load(path: Path) -> list[np.ndarray]:
    return decode(Path(path).read_bytes(), str(path))


def checksum(arrays: list[np.ndarray]) -> dict:
    """The runners' output checksum: float64 sum and sum of absolute values over all outputs."""
    total = sum(float(np.sum(a, dtype=np.float64)) for a in arrays)
    abs_total = sum(float(np.sum(np.abs(a.astype(np.float64)))) for a in arrays)
    return {"sum": total, "abs_sum": abs_total, "count": int(sum(a.size for a in arrays))}
