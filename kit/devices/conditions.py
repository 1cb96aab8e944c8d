"""Reading the conditions that explain a number (CPU model, cores, governor, frequencies, thermal
zones) and CPU capabilities (SME2) from text any transport can fetch: /proc/cpuinfo, sysfs files,
`getprop`, `sysctl`. Pure parsing functions, tested on samples from real devices."""

from __future__ import annotations

import re

# Linux arm64 HWCAP2 bits (arch/arm64/include/uapi/asm/hwcap.h).
HWCAP2_SME = 1 << 23
HWCAP2_SME2 = 1 << 37


def parse_cpuinfo(text: str) -> dict:
    """CPU model, logical core count and feature flags from /proc/cpuinfo (x86 or arm64)."""
    features: set[str] = set()
    model = ""
    parts: set[str] = set()
    cores = 0
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        if key == "processor":
            cores += 1
        elif key in ("flags", "features"):
            features.update(value.split())
        elif key in ("model name", "hardware", "cpu model") and not model:
            model = value
        elif key == "cpu part":
            parts.add(value)
    if not model and parts:
        model = "arm64 parts " + ",".join(sorted(parts))
    return {"cpu_model": model, "cores": cores, "features": sorted(features), "cpu_parts": sorted(parts)}


def has_sme2(cpuinfo: dict) -> bool:
    return "sme2" in cpuinfo.get("features", [])


def parse_hwcap2(value: int) -> dict:
    return {"sme": bool(value & HWCAP2_SME), "sme2": bool(value & HWCAP2_SME2)}


def parse_sysctl_sme2(text: str) -> bool:
    """macOS `sysctl hw.optional.arm.FEAT_SME2` prints 'hw.optional.arm.FEAT_SME2: 1'."""
    m = re.search(r"FEAT_SME2:\s*(\d+)", text)
    return bool(m and m.group(1) == "1")


def parse_sysctl(text: str) -> dict[str, str]:
    """`sysctl name ...` output ('name: value' lines; unknown names go to stderr) to {name: value}."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() and " " not in key.strip():
            out[key.strip()] = value.strip()
    return out


def arm_features(sysctl: dict[str, str]) -> dict[str, int]:
    """The `hw.optional.arm` family as {FEAT_SME2: 1, SME_I8I32: 1, ...} (integers only)."""
    prefix = "hw.optional.arm."
    out = {}
    for key, value in sysctl.items():
        if key.startswith(prefix) and re.fullmatch(r"-?\d+", value):
            out[key[len(prefix) :]] = int(value)
    return dict(sorted(out.items()))


def parse_getprop(text: str) -> dict:
    """`adb shell getprop` output ('[key]: [value]' lines) to a dict."""
    return dict(re.findall(r"^\[([^\]]+)\]:\s*\[([^\]]*)\]", text, flags=re.M))


def parse_khz(text: str | None) -> int | None:
    try:
        return int(text.strip()) if text is not None and text.strip() else None
    except ValueError:
        return None


def parse_thermal(zones: list[tuple[str, str]]) -> dict[str, float]:
    """(type, temp in millidegrees) pairs to {type: degrees C}."""
    out = {}
    for kind, temp in zones:
        try:
            out[kind.strip()] = int(temp.strip()) / 1000.0
        except ValueError:
            continue
    return out
