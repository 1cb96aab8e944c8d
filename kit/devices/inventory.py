"""The device registry (kit/devices/devices.toml, overridden by $SME2_HOME/devices.toml) and target
resolution: a target key becomes a device, a transport and a runner toolchain, with the SME2 flag
checked against what the device can do."""

from __future__ import annotations

import re
import contextlib
import os
import time
from kit.core.compat import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveInt,
    ValidationError,
    field_validator,
)

from kit.core import names
from kit.core.errors import NameError_, Sme2Error, TargetError
from kit.core.home import DataRoot
from kit.core.locks import file_lock
from kit.core.names import Target
from kit.devices import toolsetup
from kit.devices import sourcetree
from kit.devices.transports.adb import AdbTransport
from kit.devices.transports.local import Host, LocalTransport
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
    "kleidiai_source_dir",
    "description",
    "sme2",
    "lab_host",
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
    kleidiai_source_dir: str | None = None
    description: str | None = None
    sme2: bool | None = None
    lab_host: str | None = None  # the lab host (worker queue) the device is attached to

    # Both reach argv (`env KEY=VALUE`, `qemu -E KEY=VALUE`, `taskset -c LIST`): an environment
    # name that starts with '-' would be read as an option, so only plain names and CPU lists pass.
    @field_validator("env", mode="before")
    @classmethod
    def _env_strings(cls, env):
        # Numbers are not coerced: `A = 1` in TOML is an integer, and an environment holds text.
        if isinstance(env, dict) and any(not isinstance(v, str) for v in env.values()):
            raise ValueError('env values must be strings (quote them: A = "1")')
        return env

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        for key, value in env.items():
            if not ENV_NAME.fullmatch(key):
                raise ValueError(
                    f"env name {key!r} is not a variable name (letters, digits, _; not starting with a digit)"
                )
            if "\0" in value or "\n" in value:
                raise ValueError(f"env value of {key} holds a NUL or newline")
        return env

    @field_validator("affinity")
    @classmethod
    def _cpu_list(cls, value):
        if isinstance(value, str) and value != "fastest" and not CPU_LIST.fullmatch(value):
            raise ValueError(f'affinity {value!r} is not a CPU list (e.g. "4-7", "0,2") or "fastest"')
        return value


ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
CPU_LIST = re.compile(r"\d{1,4}(-\d{1,4})?(,\d{1,4}(-\d{1,4})?){0,63}")
KNOWN_KEYS = set(DeviceEntry.model_fields)
# What a bad value of a key means, and what to write instead.
_PROBLEMS = {
    "transport": ("unknown transport {value!r}", f"use one of {', '.join(TRANSPORTS)}"),
    "platform": ("unknown platform {value!r}", f"use one of auto, {', '.join(PLATFORMS)}"),
    "recipe": ("unknown recipe {value!r}", f"use one of {', '.join(RECIPES)}"),
    "threads": ("threads must be a list of positive integers, not {value!r}", "e.g. threads = [1, 4]"),
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

    @property
    def lab_host(self) -> str | None:
        """The lab host the device is attached to (its worker queue), or None: any host."""
        return self.props.get("lab_host")

    def targets(self) -> list[Target]:
        return [Target(self.name, True), Target(self.name, False)]


def _device(name: str, raw: dict, source: str, host: Host | None = None) -> Device:
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
        (host or Host.this_machine()).platform if entry.platform == "auto" else entry.platform,
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
        f"device {name!r} in {source}: key {key!r} = {raw.get(key)!r} is invalid: {err['msg'][:1].lower() + err['msg'][1:]}",
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
    "lab_host": names.queue_name,
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
    for key in ("key", "executorch_repo", "android_ndk", "kleidiai_source_dir", "description"):
        if key in props and (not isinstance(props[key], str) or "\0" in props[key]):
            raise Sme2Error(
                f"device {device!r} in {source}: key {key!r} must be a string", f'e.g. {key} = "..." in {source}'
            )
    return props


def load_registry(
    root: DataRoot | None = None, extra_file: Path | None = None, host: Host | None = None
) -> dict[str, Device]:
    """Defaults from the repo, then the user's file: a device defined in both is replaced whole
    by the user's (keys merged over the default). `platform = "auto"` is the platform of `host`
    (default: this machine)."""
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
    return {name: _device(name, raw, sources[name], host) for name, raw in merged.items()}


@dataclass
class ResolvedTarget:
    target: Target
    device: Device
    transport: object  # kit.transports.base.Transport
    recipe: str = ""  # the runner recipe this target needs (recipe_for); "" = the device's

    def __post_init__(self):
        self.recipe = self.recipe or self.device.recipe

    def env_for(self, threads: int) -> dict:
        return dict(self.device.env)

    def affinity_for(self, threads: int) -> str | None:
        """CPU list to pin to: "fastest" pins a 1-thread run to the fastest core (where the device
        tells; else the last core); an explicit list ("4-7") applies to every run. None where the
        device cannot pin (macOS has no affinity API)."""
        aff = self.device.affinity
        if not aff or not getattr(self.transport, "pinnable", True):
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
            "recipe": self.recipe,
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


def emulated_cpu_sme2(device: Device, sme2: bool) -> bool:
    """The QEMU CPU setting for a target: the flag itself for the default emulated pair (the wheel
    runner's XNNPACK follows the CPU); always SME2 for a device that stands for SME2 hardware
    (`sme2 = true`) or builds SME2 on/off from source, where the runner decides, as on a board."""
    return True if device.recipe == "source" or device.props.get("sme2") is True else sme2


def make_transport(device: Device, root: DataRoot, sme2: bool, host: Host | None = None):
    """The transport instance for one device (and, for QEMU, one CPU setting). `host` describes
    this machine for the local transport (default: the real one)."""
    opts = {"affinity": device.affinity}
    if device.transport == "local":
        return LocalTransport(device.name, options=opts, host=host or Host.this_machine())
    if device.transport == "qemu":
        this = (host or Host.this_machine()).platform
        if not this.startswith("linux"):
            raise TargetError(
                f"device {device.name!r} is emulated with qemu-user, which runs on Linux only (this host is {this})",
                "on an Apple-silicon Mac the host itself is an SME2 CPU: profile host.sme2-on (and host.sme2-off with a "
                "source-built runner: sme2 source fetch)",
            )
        info = toolsetup.load_setup(root) or {}
        qemu = info.get("qemu") or str(toolsetup.find_qemu(root) or "")
        return QemuTransport(
            device.name,
            options=opts,
            qemu=qemu,
            sysroot=info.get("sysroot", str(toolsetup.SYSROOT)),
            sme2=emulated_cpu_sme2(device, sme2),
            lib_dir=str(toolsetup.aarch64_executorch_root(root) / "lib"),
        )
    if device.transport == "ssh":
        return SshTransport.from_device(device, root)
    if device.transport == "adb":
        return AdbTransport.from_device(device, root)
    raise TargetError(f"unknown transport {device.transport!r}", f"use one of {', '.join(TRANSPORTS)}")


def resolve(
    target_key: str, root: DataRoot, registry: dict[str, Device] | None = None, host: Host | None = None
) -> ResolvedTarget:
    target = Target.parse(target_key)
    registry = registry if registry is not None else load_registry(root, host=host)
    device = registry.get(target.device)
    if device is None:
        raise TargetError(
            f"unknown device {target.device!r} in target {target_key!r}",
            f"known devices: {', '.join(sorted(registry))}; add one to {root.user_devices}",
        )
    if not device.enabled:
        raise TargetError(f"device {device.name!r} is disabled", f"set enabled = true for it in {root.user_devices}")
    transport = make_transport(device, root, target.sme2, host)
    transport.prepare()
    plan = check_sme2(device, target, transport)
    return ResolvedTarget(target, device, transport, plan.recipe)


# ---- which runner recipe produces which target, and what is missing for the others

WHEEL_PLATFORMS_REMOTE = ("linux-aarch64",)  # besides this machine's own platform


def source_tree(device: Device) -> str | None:
    """The ExecuTorch source tree a source build would use: the device's, $EXECUTORCH_REPO, or the
    one `sme2 source fetch` completed."""
    return sourcetree.configured_tree(device.props)


def recipe_for(device: Device, target: Target, sme2_hardware: bool | None) -> str:
    """`source` for every target of a source device, and for SME2 *off* on SME2 hardware (the only
    way: XNNPACK picks SME2 kernels at run time and has no switch); else `wheel`."""
    if device.recipe == "source" or (not target.sme2 and sme2_hardware):
        return "source"
    return "wheel"


@dataclass
class TargetPlan:
    """How a device produces one target: the recipe and runner variant, or what it lacks."""

    target: str
    recipe: str
    runner: str  # "wheel", "source sme2-on", "source sme2-off"
    missing: list[tuple[str, str]] = field(default_factory=list)  # (what is missing, what to do)

    @property
    def ok(self) -> bool:
        return not self.missing

    def to_json(self) -> dict:
        return {
            "target": self.target,
            "recipe": self.recipe,
            "runner": self.runner,
            "ok": self.ok,
            "missing": [m for m, _ in self.missing],
            "todo": [h for _, h in self.missing],
        }


BUILD_SME2_OFF = (
    "run `sme2 source fetch` (ExecuTorch at the wheel's commit, with its submodules), or set "
    "EXECUTORCH_REPO=<a `git clone --recursive` of pytorch/executorch> (or executorch_repo in the device entry); "
    "see docs/targets.md"
)


def plan_target(
    device: Device, target: Target, sme2_hardware: bool | None, host_platform: str | None = None
) -> TargetPlan:
    """What a device needs to produce `target`, given whether its CPU (as the target runs it) has
    SME2 (None: unknown, not contacted). Pure: every rule of check_sme2 and `sme2 devices` is here."""
    recipe = recipe_for(device, target, sme2_hardware)
    runner = "wheel" if recipe == "wheel" else f"source sme2-{'on' if target.sme2 else 'off'}"
    plan = TargetPlan(target.key, recipe, runner)
    if target.sme2 and sme2_hardware is False:
        plan.missing.append(
            (
                f"SME2 hardware (device {device.name!r}, {device.platform}, has none)",
                f"use {device.name}.sme2-off, or the emulated target armv9-qemu.sme2-on",
            )
        )
        return plan
    if recipe == "source":
        if not source_tree(device):
            why = (
                "its SME2 cannot be switched off with the wheel runner (XNNPACK picks SME2 kernels at run time)"
                if device.recipe == "wheel"
                else 'its recipe is "source"'
            )
            plan.missing.append((f"an ExecuTorch source tree: {why}", BUILD_SME2_OFF))
        if device.platform.startswith("android") and not (
            device.props.get("android_ndk") or os.environ.get("ANDROID_NDK")
        ):
            plan.missing.append(("the Android NDK", "install NDK r27 or newer and set ANDROID_NDK (or android_ndk)"))
    else:
        this = host_platform or Host.this_machine().platform
        if device.platform != this and device.platform not in WHEEL_PLATFORMS_REMOTE:
            plan.missing.append(
                (
                    f"a runner for {device.platform}: the wheel recipe builds for {this} and linux-aarch64 only",
                    'set recipe = "source" (an ExecuTorch source tree) for this device; see docs/targets.md',
                )
            )
    return plan


def check_sme2(device: Device, target: Target, transport, host_platform: str | None = None) -> TargetPlan:
    """Refuse a target the device cannot honour (SME2 on without SME2 hardware; SME2 off on SME2
    hardware without a source tree to build an SME2-off runner); return how it is produced."""
    detected = getattr(transport, "detect_sme2", lambda: None)()
    return check_detected(
        device, target, detected, host_platform or getattr(getattr(transport, "host", None), "platform", None)
    )


def check_detected(device: Device, target: Target, detected: bool | None, host_platform: str | None) -> TargetPlan:
    """check_sme2 with the device's SME2 already known (True/False) or unknown (None)."""
    plan = plan_target(device, target, detected, host_platform)
    if plan.missing:
        what, todo = plan.missing[0]
        if target.sme2 and detected is False:
            raise TargetError(
                f"target {target.key} asks for SME2, but device {device.name!r} ({device.platform}) has no SME2", todo
            )
        raise TargetError(f"target {target.key}: device {device.name!r} needs {what}", todo)
    return plan


def survey(root: DataRoot, detect: bool = True, host: Host | None = None) -> list[dict]:
    """Every registered device with, per target, the runner recipe that produces it and what is
    missing for the others; detected capabilities when reachable. A device that cannot be
    reached is reported, never fatal."""
    out = []
    this = (host or Host.this_machine()).platform
    for dev in load_registry(root, host=host).values():
        row = {
            "device": dev.name,
            "transport": dev.transport,
            "platform": dev.platform,
            "recipe": dev.recipe,
            "emulated": dev.emulated,
            "enabled": dev.enabled,
            "threads": dev.threads,
            "size": dev.size,
            "targets": [],
            "plans": [],
            "sme2_detected": None,
            "cpu_model": None,
            "status": "not checked",
        }
        hardware = dev.props.get("sme2") if isinstance(dev.props.get("sme2"), bool) else None
        if detect and dev.enabled:
            try:
                tr = make_transport(dev, root, True, host)
                tr.prepare()
                info = tr.describe()
                row["cpu_model"] = info.get("cpu_model")
                hardware = tr.detect_sme2()
                row["status"] = "ok"
            except Sme2Error as e:
                row["status"] = f"unavailable: {e.message}"
        elif not dev.enabled:
            row["status"] = "disabled"
        row["sme2_detected"] = hardware
        for t in dev.targets():
            cpu = emulated_cpu_sme2(dev, t.sme2) if dev.emulated else hardware
            plan = plan_target(dev, t, cpu, this)
            row["plans"].append(plan.to_json())
            if plan.ok and row["status"] in ("ok", "not checked"):
                row["targets"].append(t.key)
        out.append(row)
    return out
