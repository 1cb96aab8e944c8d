"""The `qemu` transport: an emulated Armv9 CPU on this machine, user-mode QEMU >= 10.1.

`-cpu max` gives SME2 (XNNPACK picks KleidiAI SME2 kernels at run time); `-cpu max,sme=off` takes
it away. One aarch64 runner binary serves both. The streaming vector length is set to 512 bits,
that of the SME2 CPUs users own (Apple M4; QEMU's own default is 256), since KleidiAI's kernels
size their tiles by it. Timings are emulated, never hardware timings: every run from this transport
is marked emulated.

A counting run (`counting(out)`) runs under the plugin-capable QEMU of `sme2 setup --counts` with
our instruction-counting plugin (kit/counts), which writes its counts to `out`."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

from kit.core.errors import TargetError
from kit.devices.transports.base import Completed, run_local
from kit.devices.transports.local import LocalTransport, pin


SVL_BYTES = 64  # streaming vector length: 512 bits


def cpu_args(sme2: bool) -> list[str]:
    return ["-cpu", f"max,sme-default-vector-length={SVL_BYTES}" if sme2 else "max,sme=off"]


@dataclass
class QemuTransport(LocalTransport):
    qemu: str = ""
    sysroot: str = "/usr/aarch64-linux-gnu"
    sme2: bool = True
    lib_dir: str = ""  # the aarch64 executorch libraries
    # A counting run: the plugin-capable QEMU, the counting plugin and the file it writes.
    counting_qemu: str = ""
    plugin: str = ""
    plugin_out: str = ""

    def __post_init__(self):
        self.emulated = True

    def counting(self, tools, out: Path) -> "QemuTransport":
        """This transport for one counting run: `tools` (kit.counts.qemu_build.CountingTools)
        count every instruction the program retires into `out`."""
        for what, path in (("plugin", tools.plugin), ("counts file", out), ("QEMU", tools.qemu)):
            if "," in str(path):
                # QEMU splits -plugin's argument at commas: such a path would become other arguments.
                raise TargetError(
                    f"the {what} path {path} contains a comma, which QEMU's -plugin option cannot take",
                    "use a data root ($SME2_HOME) and tools folder whose paths have no commas",
                )
        return replace(self, counting_qemu=str(tools.qemu), plugin=str(tools.plugin), plugin_out=str(out))

    def prepare(self) -> None:
        if not self.qemu or not Path(self.qemu).exists():
            raise TargetError("QEMU >= 10.1 is not set up for the emulated Armv9 targets", "run: sme2 setup")
        if not Path(self.sysroot).exists():
            raise TargetError(
                f"the aarch64 sysroot {self.sysroot} is missing", "as root: apt-get install g++-aarch64-linux-gnu"
            )

    def wrap(self, argv: list[str], env: dict | None = None) -> list[str]:
        """The argv QEMU runs: sysroot, CPU setting, guest environment, then the program."""
        guest_env = {**(env or {})}
        if self.lib_dir:
            guest_env["LD_LIBRARY_PATH"] = self.lib_dir
        env_args = [a for k, v in guest_env.items() for a in ("-E", f"{k}={v}")]
        if self.plugin_out:
            plugin = ["-plugin", f"{self.plugin},out={self.plugin_out}"]
            return [self.counting_qemu, "-L", self.sysroot, *cpu_args(self.sme2), *plugin, *env_args, *argv]
        return [self.qemu, "-L", self.sysroot, *cpu_args(self.sme2), *env_args, *argv]

    def run(self, argv: list[str], timeout: float, env: dict | None = None, cpus: str | None = None) -> Completed:
        self.prepare()
        return run_local(pin(self.wrap(argv, env), cpus), timeout)

    def describe(self) -> dict:
        info = super().describe()
        try:
            version = subprocess.run(
                [self.qemu, "--version"], capture_output=True, text=True, timeout=20
            ).stdout.splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            version = "unknown"
        return {
            **info,
            "emulated": True,
            "host_cpu_model": info.get("cpu_model"),
            "cpu_model": f"QEMU {' '.join(cpu_args(self.sme2))} (emulated Armv9)",
            "qemu": version,
            "cpu_setting": " ".join(cpu_args(self.sme2)),
            "sme2_detected": self.sme2,
        }

    def detect_sme2(self) -> bool:
        return self.sme2
