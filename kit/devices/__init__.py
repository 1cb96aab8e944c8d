"""Stage 2, where programs run: the device inventory (devices.toml), targets (device x SME2 flag),
capability detection, transports (local, qemu, ssh, adb) and the emulator set-up."""

__all__ = [  # the sub-package's public modules: `from kit.devices import *`, or import each by name
    "conditions",
    "inventory",
    "logcat",
    "simpleperf",
    "sourcetree",
    "toolsetup",
    "transports",
]
