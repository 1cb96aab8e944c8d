"""Validated names: every model, dtype, device and target name is checked here before it becomes a
path, a partition key or an argv element."""

from __future__ import annotations

import re
from dataclasses import dataclass

from kit.core.errors import NameError_

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


# ---- values read from files (devices.toml, run.json) that become argv elements or paths.
# They are checked like CLI arguments: a leading "-" would be read as an option, a "/" or ".."
# would leave the data root.

SSH_USER = re.compile(r"[a-z_][a-z0-9_.-]*")
_DNS_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
DNS_NAME = re.compile(rf"(?=.{{1,253}}$){_DNS_LABEL}(\.{_DNS_LABEL})*\.?")
# adb serials: USB serials, emulator-5554, 192.168.1.5:5555, mDNS names (adb-XYZ._adb-tls-connect._tcp).
ADB_SERIAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")
# An absolute POSIX path in a plain character set: it goes to a remote shell and to scp.
REMOTE_PATH = re.compile(r"(/[A-Za-z0-9_.+-]+)+/?")
# Run ids and file stems: one path component, starting with a letter or digit (never "." or "-").
FILE_COMPONENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
RUNNER_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
MAX_COMPONENT = 200  # leaves room for suffixes like "_exec_ops_stats.csv" within NAME_MAX (255)


def ssh_user(value) -> str:
    if not isinstance(value, str) or len(value) > 32 or not SSH_USER.fullmatch(value):
        raise NameError_(f"invalid ssh user {value!r}", "user names must match [a-z_][a-z0-9_.-]* (at most 32 chars)")
    return value


def host_name(value) -> str:
    """A DNS name, an IPv4 address or an IPv6 address (bracketed "[::1]" or bare "::1"); returned
    without brackets."""
    import ipaddress

    if isinstance(value, str) and value and not value.startswith("-"):
        bracketed = value.startswith("[") and value.endswith("]")
        bare = value[1:-1] if bracketed else value
        if not bracketed and DNS_NAME.fullmatch(bare) and not bare.replace(".", "").isdigit():
            return bare
        try:
            address = ipaddress.ip_address(bare)
            if not bracketed or address.version == 6:
                return bare
        except ValueError:
            pass
    raise NameError_(
        f"invalid host {value!r}",
        'use a DNS name ("board.local"), an IPv4 address or a bracketed IPv6 address ("[::1]")',
    )


def port_number(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise NameError_(f"invalid port {value!r}", "ports are integers from 1 to 65535, e.g. port = 2222")
    return value


def adb_serial(value) -> str:
    if not isinstance(value, str) or len(value) > 128 or not ADB_SERIAL.fullmatch(value):
        raise NameError_(
            f"invalid adb serial {value!r}", "serials are what `adb devices` lists: letters, digits and . _ : -"
        )
    return value


def remote_path(value) -> str:
    if (
        not isinstance(value, str)
        or len(value) > 1024
        or not REMOTE_PATH.fullmatch(value)
        or any(part in (".", "..") for part in value.split("/"))
    ):
        raise NameError_(
            f"invalid remote folder {value!r}",
            "use an absolute path of letters, digits and _ . + - (no '..'), e.g. /data/local/tmp/sme2",
        )
    return value


def file_component(kind: str, value, allow_empty: bool = False) -> str:
    """One path component (a run id, a file stem): never empty, '.', '..', absolute or with '/'."""
    if allow_empty and value == "":
        return value
    if not isinstance(value, str) or len(value) > MAX_COMPONENT or not FILE_COMPONENT.fullmatch(value):
        raise NameError_(
            f"invalid {kind} {value!r}",
            f"a {kind} is one file name of letters, digits and _ . + - (at most {MAX_COMPONENT} chars)",
        )
    return value


def runner_name(value) -> str:
    return _check("runner", value, RUNNER_NAME, "[a-z0-9][a-z0-9_-]*")


QUEUE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")


def queue_name(value) -> str:
    """A lab host: the name of its worker queue (`sme2 worker --queue lab-host-1`, devices.toml's
    `lab_host`). It becomes a Celery queue, a worker name and a file name."""
    return _check("lab host (queue)", value, QUEUE_NAME, "[a-z0-9][a-z0-9_-]*")
