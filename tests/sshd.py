"""A real OpenSSH server on 127.0.0.1 for the ssh transport tests: keys and config in a temp
folder, key authentication only."""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sshd:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.user = getpass.getuser()
        self.key = self.folder / "user_key"
        self.proc: subprocess.Popen | None = None
        for name in ("host_key", "user_key"):
            if not (self.folder / name).exists():
                subprocess.run(
                    ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.folder / name)], check=True
                )
        shutil.copy(self.folder / "user_key.pub", self.folder / "authorized_keys")
        sftp = next(
            (p for p in ("/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server") if os.path.exists(p)),
            "internal-sftp",
        )
        (self.folder / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {self.folder / 'host_key'}\nPidFile {self.folder / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {self.folder / 'authorized_keys'}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            f"PubkeyAuthentication yes\nPermitRootLogin yes\nStrictModes no\nUsePAM no\nSubsystem sftp {sftp}\n"
        )

    def start(self) -> "Sshd":
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.folder / "sshd_config")],
            stderr=open(self.folder / "sshd.log", "a"),
            start_new_session=True,
        )
        deadline = time.time() + 15
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.1)
        raise RuntimeError(f"sshd did not start: {(self.folder / 'sshd.log').read_text()}")

    def stop(self) -> None:
        """Kill the server and every connection it serves (the device 'disappears')."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
            self.proc = None
        # Connection handlers may have left the group: kill any sshd serving our config.
        subprocess.run(["pkill", "-9", "-f", f"sshd.*{self.folder}"], capture_output=True)
        subprocess.run(["pkill", "-9", "-f", f"sshd: {self.user}"], capture_output=True)

    def device_toml(self, name: str, remote_dir: Path) -> str:
        return (
            f'[device.{name}]\ntransport = "ssh"\nplatform = "linux-x86_64"\nhost = "127.0.0.1"\nport = {self.port}\n'
            f'user = "{self.user}"\nkey = "{self.key}"\nremote_dir = "{remote_dir}"\nthreads = [1]\nsize = "small"\n'
        )
