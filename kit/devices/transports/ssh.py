"""The `ssh` transport: any Linux device reachable over ssh (aarch64 boards, Armv9 servers).

Connections are multiplexed (ControlMaster) so the many small commands of a run cost one
handshake; host keys are pinned in $SME2_HOME/tools/known_hosts on first contact."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from kit.core import names
from kit.core.errors import NameError_, TargetError
from kit.devices import conditions
from kit.devices.transports.base import Completed, run_local
from kit.devices.transports.local import describe_linux
from kit.devices.transports.remote import RemoteTransport, quote


def control_dir(base: str = "/tmp") -> str:
    """Control sockets live in a short private folder (Unix socket paths are limited to ~100 bytes).
    A folder of that name made by someone else, or open to others, could hold a socket another user
    planted and would carry our ssh sessions through it: it is refused, never reused."""
    d = f"{base}/sme2-ssh-{os.getuid()}"
    try:
        os.mkdir(d, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(d)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or stat.S_IMODE(st.st_mode) & 0o077:
        raise TargetError(
            f"the ssh control folder {d} is not a private folder of this user (owner uid {st.st_uid}, mode "
            f"{stat.S_IMODE(st.st_mode):o}, {'a folder' if stat.S_ISDIR(st.st_mode) else 'not a folder'})",
            f"remove it (it may have been planted by another user), then retry: rm -rf {d}",
        )
    return d


@dataclass
class SshTransport(RemoteTransport):
    host: str = ""
    port: int = 22
    user: str = "root"
    key: str | None = None
    state_dir: str = ""  # known_hosts and control sockets
    kill_on_disconnect = True  # the remote runner dies when the connection does (remote.KILL_ON_DISCONNECT)

    def __post_init__(self):
        super().__post_init__()
        # Checked again here (devices.toml is checked at load) so a transport built any other way
        # cannot put an option where ssh expects a user, a host or a port either.
        try:
            self.host = names.host_name(self.host)
            self.user = names.ssh_user(self.user)
            self.port = names.port_number(self.port)
            names.remote_path(self.remote_dir)
        except NameError_ as e:
            raise TargetError(f"ssh device {self.device!r}: {e.message}", e.hint) from e

    @classmethod
    def from_device(cls, device, root) -> "SshTransport":
        p = device.props
        if not p.get("host"):
            raise TargetError(
                f"ssh device {device.name!r} has no host", f'set host = "..." for it in {root.user_devices}'
            )
        state = root.tools / "ssh"
        state.mkdir(parents=True, exist_ok=True)
        return cls(
            device.name,
            options={"affinity": device.affinity},
            remote_dir=p.get("remote_dir", "/tmp/sme2"),
            host=str(p["host"]),
            port=p.get("port", 22),
            user=p.get("user", "root"),
            key=p.get("key"),
            state_dir=str(state),
        )

    def _opts(self) -> list[str]:
        opts = [
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=accept-new",
            "-o",
            f"UserKnownHostsFile={self.state_dir}/known_hosts",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "ServerAliveInterval=5",
            "-o",
            "ServerAliveCountMax=3",
            "-o",
            "ControlMaster=auto",
            "-o",
            f"ControlPath={control_dir()}/%C",
            "-o",
            "ControlPersist=60",
            "-o",
            "LogLevel=ERROR",
        ]
        if self.key:
            opts += ["-i", str(self.key), "-o", "IdentitiesOnly=yes"]
        return opts

    @property
    def destination(self) -> str:
        """The scp form `user@host` (IPv6 bracketed); ssh itself gets `-l user -- host`."""
        return f"{self.user}@[{self.host}]" if ":" in self.host else f"{self.user}@{self.host}"

    def ssh_argv(self, argv: list[str]) -> list[str]:
        # User and port as separate option values, then "--": nothing after it (the host, the
        # quoted remote command) can be read as an ssh option.
        return ["ssh", "-l", self.user, "-p", str(self.port), *self._opts(), "--", self.host, quote(argv)]

    def scp_argv(self, src: str, dst: str) -> list[str]:
        return ["scp", "-q", "-P", str(self.port), *self._opts(), "--", src, dst]

    def shell(self, argv: list[str], timeout: float = 60.0) -> Completed:
        return run_local(self.ssh_argv(argv), timeout)

    def copy_to(self, local: Path, remote: str) -> Completed:
        return run_local(self.scp_argv(str(Path(local).absolute()), f"{self.destination}:{remote}"), 600)

    def copy_from(self, remote: str, local: Path) -> Completed:
        return run_local(self.scp_argv(f"{self.destination}:{remote}", str(Path(local).absolute())), 600)

    def lost(self, done: Completed) -> bool:
        # ssh exits 255 for its own errors (connection refused, reset, timed out).
        return done.returncode == 255

    def describe(self) -> dict:
        machine = self.shell(["uname", "-m"]).stdout.strip()
        return {**describe_linux(self.read_file, machine), "host": self.host}

    def detect_sme2(self) -> bool:
        return conditions.has_sme2(conditions.parse_cpuinfo(self.read_file("/proc/cpuinfo") or ""))
