"""Validated names: every model, dtype, device and target name is checked here before it becomes a
path, a partition key or an argv element."""

from __future__ import annotations

import re
from dataclasses import dataclass

from kit.errors import NameError_

MODEL_NAME = re.compile(r"[a-z0-9_]+")
DEVICE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
DTYPES = ("fp32", "fp16", "int8", "int8-dynamic")
BACKENDS = ("xnnpack", "portable")
SIZE_NAME = re.compile(r"[a-z0-9_]+")
MAX_NAME = 64


def _check(kind: str, value: str, pattern: re.Pattern, rule: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_NAME or not pattern.fullmatch(value):
        raise NameError_(f"invalid {kind} name {value!r}", f"{kind} names must match {rule} (at most {MAX_NAME} chars)")
    return value


def model_name(value: str) -> str:
    return _check("model", value, MODEL_NAME, "[a-z0-9_]+")


def device_name(value: str) -> str:
    return _check("device", value, DEVICE_NAME, "[a-z0-9][a-z0-9_-]*")


def size_name(value: str) -> str:
    return _check("size", value, SIZE_NAME, "[a-z0-9_]+")


def dtype(value: str) -> str:
    if value not in DTYPES:
        raise NameError_(f"unknown dtype {value!r}", f"use one of {', '.join(DTYPES)}")
    return value


def backend(value: str) -> str:
    if value not in BACKENDS:
        raise NameError_(f"unknown backend {value!r}", f"use one of {', '.join(BACKENDS)}")
    return value


@dataclass(frozen=True, order=True)
class Variant:
    """A model variant: model x dtype (x backend). Its key `<model>-<dtype>` is the model partition."""

    model: str
    dtype: str
    backend: str = "xnnpack"

    def __post_init__(self):
        model_name(self.model)
        dtype(self.dtype)
        backend(self.backend)

    @property
    def key(self) -> str:
        base = f"{self.model}-{self.dtype}"
        return base if self.backend == "xnnpack" else f"{base}-{self.backend}"

    @property
    def stem(self) -> str:
        """File stem of the program: `<model>_<backend>_<dtype>`."""
        return f"{self.model}_{self.backend}_{self.dtype.replace('-', '_')}"

    @classmethod
    def parse(cls, key: str) -> "Variant":
        model, sep, rest = key.partition("-")
        if not sep:
            raise NameError_(f"invalid model variant key {key!r}", "expected <model>-<dtype>, e.g. tiny_seg-fp32")
        for be in BACKENDS[1:]:
            if rest.endswith(f"-{be}"):
                return cls(model, rest[: -len(be) - 1], be)
        return cls(model, rest)


@dataclass(frozen=True, order=True)
class Target:
    """A device plus an SME2 flag; key `<device>.sme2-on` or `<device>.sme2-off`."""

    device: str
    sme2: bool

    def __post_init__(self):
        device_name(self.device)

    @property
    def key(self) -> str:
        return f"{self.device}.sme2-{'on' if self.sme2 else 'off'}"

    @classmethod
    def parse(cls, key: str) -> "Target":
        device, sep, flag = key.rpartition(".")
        if not sep or flag not in ("sme2-on", "sme2-off"):
            raise NameError_(
                f"invalid target {key!r}", "expected <device>.sme2-on or <device>.sme2-off, e.g. host.sme2-off"
            )
        return cls(device, flag == "sme2-on")
