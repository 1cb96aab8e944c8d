"""The device registry (kit/devices/devices.toml, overridden by $SME2_HOME/devices.toml) and target
resolution: a target key becomes a device, a transport and a runner toolchain, with the SME2 flag
checked against what the device can do."""

from __future__ import annotations

import contextlib
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, NonNegativeInt, PositiveInt, ValidationError

from kit.core import names
from kit.core.errors import NameError_, Sme2Error, TargetError
from kit.core.home import DataRoot
from kit.core.locks import file_lock
from kit.core.names import Target
from kit.core.platforms import HOST_PLATFORM
from kit.devices import toolsetup
from kit.devices.transports.adb import AdbTransport
from kit.devices.transports.local import LocalTransport
from kit.devices.transports.qemu import QemuTransport
from kit.devices.transports.ssh import SshTransport

DEFAULTS_FILE = Path(__file__).resolve().parent / "devices.toml"  # package data
TRANSPORTS = ("local", "qemu", "ssh", "adb")
PLATFORMS = ("linux-x86_64", "linux-aarch64", "android-arm64-v8a", "macos-arm64")
RECIPES = ("wheel", "source")
# Where to reach a device and how to build for it: kept as free-form properties.
PROPERTY_KEYS = (
    "host",
    "port",
    "user",
    "key",
    "remote_dir",
    "serial",
    "executorch_repo",
    "android_ndk",
    "description",
    "sme2",
)


class DeviceEntry(BaseModel):
    """One `[device.<name>]` table of devices.toml as written (TOML types, no coercion); defaults
    that depend on the transport are applied by `_device`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    transport: Literal[TRANSPORTS] = "local"
    platform: Literal[("auto", *PLATFORMS)] = "auto"
    recipe: Literal[RECIPES] = "wheel"
    threads: list[PositiveInt] = Field(default_factory=lambda: [1], min_length=1)
    affinity: str | NonNegativeInt | None = None
    env: dict[str, str] = Field(default_factory=dict)
    cooldown_s: NonNegativeFloat = 0.0
    size: str | None = None
    max_iterations: PositiveInt | None = None
    enabled: bool = True
    host: str | None = None
    port: int | None = Field(None, ge=1, le=65535)
    user: str | None = None
    key: str | None = None
    remote_dir: str | None = None
    serial: str | None = None
    executorch_repo: str | None = None
    android_ndk: str | None = None
    description: str | None = None
    sme2: bool | None = None


KNOWN_KEYS = set(DeviceEntry.model_fields)
# What a bad value of a key means, and what to write instead.
_PROBLEMS = {
    "transport": ("unknown transport {value!r}", f"use one of {', '.join(TRANSPORTS)}"),
    "platform": ("unknown platform {value!r}", f"use one of auto, {', '.join(PLATFORMS)}"),
    "recipe": ("unknown recipe {value!r}", f"use one of {', '.join(RECIPES)}"),
    "threads": ("threads must be a list of positive integers, not {value!r}", "e.g. threads = [1, 4]"),
    "env": ("env values must be strings", 'e.g. env = { OMP_NUM_THREADS = "1" }'),
}


@dataclass
class Device:
    name: str
    transport: str
    platform: str
    recipe: str = "wheel"
    threads: list[int] = field(default_factory=lambda: [1])
    affinity: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    cooldown_s: float = 0.0
    size: str = "full"
    max_iterations: int | None = None
    enabled: bool = True
    props: dict = field(default_factory=dict)  # transport properties (host, port, serial, ...)

    @property
    def emulated(self) -> bool:
        return self.transport == "qemu"

    def targets(self) -> list[Target]:
        return [Target(self.name, True), Target(self.name, False)]


def _device(name: str, raw: dict, source: str) -> Device:
    try:
        names.device_name(name)
    except Sme2Error as e:
        raise type(e)(f"{e.message} in {source}", e.hint) from None
    try:
        entry = DeviceEntry.model_validate(raw)
    except ValidationError as e:
        raise _problem(name, raw, source, e) from None
    qemu = entry.transport == "qemu"
    return Device(
        name,
        entry.transport,
        HOST_PLATFORM if entry.platform == "auto" else entry.platform,
        entry.recipe,
        entry.threads,
        entry.affinity,
        entry.env,
        entry.cooldown_s,
        names.size_name(entry.size or ("small" if qemu else "full")),
        entry.max_iterations if "max_iterations" in raw else (10 if qemu else None),
        entry.enabled,
        _checked_props(name, {k: getattr(entry, k) for k in PROPERTY_KEYS if k in raw}, source),
    )


def _problem(name: str, raw: dict, source: str, e: ValidationError) -> Sme2Error:
    """The first thing wrong with a device's table, naming the file, the device and the key."""
    errors = e.errors()
    unknown = sorted(str(err["loc"][0]) for err in errors if err["type"] == "extra_forbidden")
    if unknown:
        return Sme2Error(
            f"device {name!r} in {source} has unknown keys {unknown}",
            f"known keys: {', '.join(sorted(KNOWN_KEYS))}",
        )
    err = errors[0]
    key = str(err["loc"][0])
    if key in _PROBLEMS:
        message, hint = _PROBLEMS[key]
        return Sme2Error(f"device {name!r} in {source}: " + message.format(value=raw.get(key)), hint)
    return Sme2Error(
        f"device {name!r} in {source}: key {key!r} = {raw.get(key)!r} is invalid: {err['msg'].lower()}",
        f"fix {key} for [device.{name}] in {source}; kit/devices/devices.toml lists the keys and their types",
    )


# Transport properties that end up in an ssh/scp/adb argv or a remote shell: checked when the file
# is loaded, so a value like user = "-oProxyCommand=..." can never be read as an option.
PROPERTY_CHECKS = {
    "host": names.host_name,
    "port": names.port_number,
    "user": names.ssh_user,
    "serial": names.adb_serial,
    "remote_dir": names.remote_path,
}


def _checked_props(device: str, props: dict, source: str) -> dict:
    for key, check in PROPERTY_CHECKS.items():
        if key in props:
            try:
                check(props[key])
            except NameError_ as e:
                raise Sme2Error(
                    f"device {device!r} in {source}: key {key!r} = {props[key]!r} is refused: {e.message}",
                    f"fix {key} for [device.{device}] in {source}: {e.hint}",
                ) from e
    for key in ("key", "executorch_repo", "android_ndk", "description"):
        if key in props and (not isinstance(props[key], str) or "\0" in props[key]):
            raise Sme2Error(
                f"device {device!r} in {source}: key {key!r} must be a string", f'e.g. {key} = "..." in {source}'
            )
    return props


def load_registry(root: DataRoot | None = None, extra_file: Path | None = None) -> dict[str, Device]:
    """Defaults from the repo, then the user's file: a device defined in both is replaced whole
    by the user's (keys merged over the default)."""
    merged: dict[str, dict] = {}
    sources: dict[str, str] = {}
    files = [DEFAULTS_FILE]
    if root is not None:
        files.append(root.user_devices)
    if extra_file is not None:
        files.append(Path(extra_file))
    for f in files:
        if not f.exists():
            continue
        try:
            data = tomllib.loads(f.read_text())
        except tomllib.TOMLDecodeError as e:
            raise Sme2Error(
                f"device registry {f} is not valid TOML: {e}",
                "fix the file; see kit/devices/devices.toml for the format",
            ) from e
        for name, raw in data.get("device", {}).items():
            merged[name] = {**merged.get(name, {}), **raw}
            sources[name] = str(f)
    return {name: _device(name, raw, sources[name]) for name, raw in merged.items()}


@dataclass
class ResolvedTarget:
    target: Target
    device: Device
    transport: object  # kit.transports.base.Transport

    def env_for(self, threads: int) -> dict:
        return dict(self.device.env)

    def affinity_for(self, threads: int) -> str | None:
        """CPU list to pin to: "fastest" pins a 1-thread run to the fastest core (where the device
        tells; else the last core); an explicit list ("4-7") applies to every run."""
        aff = self.device.affinity
        if not aff:
            return None
        if aff == "fastest":
            if threads != 1:
                return None
            core = self.transport.fastest_core()
            return str(core if core is not None else self.transport.core_count() - 1)
        return str(aff)

    def conditions(self) -> dict:
        info = {
            "device": self.device.name,
            "platform": self.device.platform,
            "transport": self.device.transport,
            "emulated": self.device.emulated,
            "recipe": self.device.recipe,
        }
        with contextlib.suppress(Exception):
            info.update(self.transport.describe())
        return info

    @contextlib.contextmanager
    def measurement_lock(self, root: DataRoot):
        """Local CPU runs (host and emulated) share one lock; each remote device has its own."""
        name = "local-cpu" if self.transport.local_cpu else f"device-{self.device.name}"
        with file_lock(root.locks / f"{name}.lock"):
            yield


def interleave(resolved: list[ResolvedTarget], threads: list[int] | None) -> list[tuple[ResolvedTarget, int]]:
    """Blocks in measurement order: per device and thread count, its targets alternate (SME2 on,
    off, ...), so slow drift (heat, governor) affects both sides of a comparison alike."""
    blocks: list[tuple[ResolvedTarget, int]] = []
    by_device: dict[str, list[ResolvedTarget]] = {}
    for r in resolved:
        by_device.setdefault(r.device.name, []).append(r)
    for group in by_device.values():
        group.sort(key=lambda r: not r.target.sme2)  # on first, then off
        for t in threads or group[0].device.threads:
            blocks.extend((r, t) for r in group)
    return blocks


def cool_down(device: Device, progress=None) -> None:
    if device.cooldown_s > 0:
        if progress:
            progress(f"{device.name}: cooling down {device.cooldown_s:.0f}s")
        time.sleep(device.cooldown_s)


def make_transport(device: Device, root: DataRoot, sme2: bool):
    """The transport instance for one device (and, for QEMU, one CPU setting)."""
    opts = {"affinity": device.affinity}
    if device.transport == "local":
        return LocalTransport(device.name, options=opts)
    if device.transport == "qemu":
        info = toolsetup.load_setup(root) or {}
        qemu = info.get("qemu") or str(toolsetup.find_qemu(root) or "")
        return QemuTransport(
            device.name,
            options=opts,
            qemu=qemu,
            sysroot=info.get("sysroot", str(toolsetup.SYSROOT)),
            sme2=sme2,
            lib_dir=str(toolsetup.aarch64_executorch_root(root) / "lib"),
        )
    if device.transport == "ssh":
        return SshTransport.from_device(device, root)
    if device.transport == "adb":
        return AdbTransport.from_device(device, root)
    raise TargetError(f"unknown transport {device.transport!r}", f"use one of {', '.join(TRANSPORTS)}")


def resolve(target_key: str, root: DataRoot, registry: dict[str, Device] | None = None) -> ResolvedTarget:
    target = Target.parse(target_key)
    registry = registry if registry is not None else load_registry(root)
    device = registry.get(target.device)
    if device is None:
        raise TargetError(
            f"unknown device {target.device!r} in target {target_key!r}",
            f"known devices: {', '.join(sorted(registry))}; add one to {root.user_devices}",
        )
    if not device.enabled:
        raise TargetError(f"device {device.name!r} is disabled", f"set enabled = true for it in {root.user_devices}")
    transport = make_transport(device, root, target.sme2)
    transport.prepare()
    check_sme2(device, target, transport)
    return ResolvedTarget(target, device, transport)


def check_sme2(device: Device, target: Target, transport) -> None:
    """Refuse a target the device cannot honour: SME2 on without SME2 hardware, or SME2 off on
    SME2 hardware with a runner whose XNNPACK picks SME2 kernels at run time."""
    if device.emulated:
        return  # QEMU's CPU setting decides
    detected = getattr(transport, "detect_sme2", lambda: None)()
    if target.sme2 and detected is False:
        raise TargetError(
            f"target {target.key} asks for SME2, but device {device.name!r} ({device.platform}) has no SME2",
            f"use {device.name}.sme2-off, or the emulated target armv9-qemu.sme2-on",
        )
    if not target.sme2 and detected and device.recipe == "wheel":
        raise TargetError(
            f"target {target.key}: device {device.name!r} has SME2 and the wheel runner cannot turn it off (XNNPACK picks SME2 kernels at run time)",
            'set recipe = "source" for this device: it builds a runner with XNNPACK_ENABLE_ARM_SME2=OFF',
        )


def survey(root: DataRoot, detect: bool = True) -> list[dict]:
    """Every registered device with its targets and, when reachable, detected capabilities. A
    device that cannot be reached is reported, never fatal."""
    out = []
    for dev in load_registry(root).values():
        row = {
            "device": dev.name,
            "transport": dev.transport,
            "platform": dev.platform,
            "recipe": dev.recipe,
            "emulated": dev.emulated,
            "enabled": dev.enabled,
            "threads": dev.threads,
            "size": dev.size,
            "targets": [t.key for t in dev.targets()],
            "sme2_detected": None,
            "cpu_model": None,
            "status": "not checked",
        }
        if detect and dev.enabled:
            try:
                tr = make_transport(dev, root, True)
                tr.prepare()
                info = tr.describe()
                row["cpu_model"] = info.get("cpu_model")
                row["sme2_detected"] = tr.detect_sme2() if not dev.emulated else True
                usable = [t.key for t in dev.targets() if _allowed(dev, t, row["sme2_detected"])]
                row["targets"] = usable
                row["status"] = "ok"
            except Sme2Error as e:
                row["status"] = f"unavailable: {e.message}"
        elif not dev.enabled:
            row["status"] = "disabled"
        out.append(row)
    return out


def _allowed(device: Device, target: Target, detected: bool | None) -> bool:
    try:
        check_sme2(device, target, type("T", (), {"detect_sme2": staticmethod(lambda: detected)})())
        return True
    except TargetError:
        return False
