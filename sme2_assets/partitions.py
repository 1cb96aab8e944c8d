"""Two dimensions (Dagster's limit): model variant `<model>-<dtype>` x target `<device>.sme2-on|off`.

Assets that depend on one dimension are partitioned on it and mapped into the two-dimensional ones."""

import warnings

import dagster as dg

from kit.core.names import Target
from kit.devices import inventory

warnings.filterwarnings("ignore", category=dg.BetaWarning)

MODEL = dg.DynamicPartitionsDefinition(name="model")
TARGET = dg.DynamicPartitionsDefinition(name="target")
MODEL_TARGET = dg.MultiPartitionsDefinition({"model": MODEL, "target": TARGET})
CONFIG = dg.DynamicPartitionsDefinition(name="config")  # experiment configs in <data root>/configs/

ON_MODEL = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="model")
ON_TARGET = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="target")


def keys(context) -> tuple[str, str]:
    """(model variant, target) of a two-dimensional partition."""
    k = context.partition_key.keys_by_dimension
    return k["model"], k["target"]


LOCAL_CPU = {"sme2/cpu": "local"}  # work on this machine's CPU: one at a time (dagster.yaml)


def run_tags(target_key: str, root=None) -> dict[str, str]:
    """Queue tags of a measurement: one run per device at a time; host and emulated targets share
    the CPU they run on (this machine's, or in a lab their lab host's). In a lab, `sme2/queue`
    names the lab host the device is attached to (devices.toml `lab_host`): the lab executor sends
    the run's steps to that host's worker (sme2_assets.lab)."""

    device = Target.parse(target_key).device
    lab_host = None
    try:
        reg = inventory.load_registry(root)
        local = reg[device].transport in ("local", "qemu")
        lab_host = reg[device].lab_host
    except Exception:  # noqa: BLE001 - an unknown device still gets a device tag
        local = False
    tags = {"sme2/device": device, "sme2/cpu": (lab_host or "local") if local else device}
    if lab_host:
        tags["sme2/queue"] = lab_host
    return tags


def config_tags(devices: list[str], root=None) -> dict[str, str]:
    """Queue tags of an experiment config's run: the local CPU when any of its devices measures on
    it; its device when it has one (a run carries one value per tag, so a config over several remote
    devices is queued under their joined names)."""
    tags = {"sme2/device": "+".join(devices)}
    try:
        reg = inventory.load_registry(root)
        local = any(reg[d].transport in ("local", "qemu") for d in devices if d in reg)
    except Exception:  # noqa: BLE001 - an unreadable registry still gets a device tag
        local = False
    tags["sme2/cpu"] = "local" if local else tags["sme2/device"]
    hosts = set()
    try:
        reg = inventory.load_registry(root)
        hosts = {reg[d].lab_host for d in devices if d in reg}
    except Exception:  # noqa: BLE001 - as above
        pass
    if len(hosts) == 1 and None not in hosts:  # a lab: every device of the config on one host
        tags["sme2/queue"] = hosts.pop()
        if local:
            tags["sme2/cpu"] = tags["sme2/queue"]
    return tags


def build_tags(target_key: str, root=None) -> dict[str, str]:
    """Queue tags of a runner build: CPU work that measures nothing, on this machine; in a lab on the
    device's lab host, whose runner cache the device's runs use (and whose CPU it then occupies)."""
    tags = local_tags()
    queue = run_tags(target_key, root).get("sme2/queue")
    if queue:
        tags.update({"sme2/cpu": queue, "sme2/queue": queue})
    return tags


def local_tags() -> dict[str, str]:
    """Queue tags of CPU-heavy work on this machine that measures nothing (exports, runner builds,
    cross-compiles for remote devices included): it must not run beside a host or emulated
    measurement."""
    return dict(LOCAL_CPU)
