"""What the ssh and adb transports share: a device reached by copying files and running argv
lists on the other side, a runner bundle installed once per runner binary, and a clear error when
the device goes away."""

from __future__ import annotations

import secrets
import shlex
from dataclasses import dataclass
from pathlib import Path

from kit.core.errors import RunnerError, TargetError
from kit.devices.transports.base import Completed, Transport

# The shared libraries the runner links (kit/runners/CMakeLists.txt); pushed beside it as lib/ when
# the runner's lib folder has them.
RUNNER_LIBS = (
    "libexecutorch.so",
    "libexecutorch_kernels_optimized.so",
    "libexecutorch_kernels_quantized.so",
    "libexecutorch_backend_xnnpack.so",
    "libexecutorch_etdump.so",
    "libexecutorch_threadpool.so",
    "libc++_shared.so",  # Android source builds (ANDROID_STL=c++_shared); they link ExecuTorch statically
)


# Runs the program (the script's arguments) in the background and a watcher that kills it once
# stdin reaches end-of-file. Nothing signals a remote process when the local side dies: ssh without
# a tty just closes the channel, and the runner would keep the device's core busy until done. The
# local stdin is a pipe run_local holds open until the program ends, so end-of-file means the
# connection or the local process is gone. `kill -0 $$` skips the kill once the script has ended
# (the program was reaped; its pid may be reused). The watcher holds no output pipe, so it never
# keeps the session open. A non-interactive shell gives background jobs /dev/null as stdin, hence
# the copy of the real stdin on fd 3.
KILL_ON_DISCONNECT = (
    "exec 3<&0; "
    '"$@" 3<&- & pid=$!; '
    "( cat <&3 >/dev/null 2>&1; kill -0 $$ 2>/dev/null && kill -9 $pid 2>/dev/null ) >/dev/null 2>&1 & "
    "exec 3<&-; "
    "wait $pid"
)


@dataclass
class RemoteTransport(Transport):
    remote_dir: str = "/data/local/tmp/sme2"
    # Wrap runs in KILL_ON_DISCONNECT: only where end-of-file on stdin is known to reach the remote
    # side when the connection drops (ssh; not verified for adb, whose older devices do not forward stdin).
    kill_on_disconnect = False

    def __post_init__(self):
        self.local_cpu = False
        self.local_fs = False

    # ---- what subclasses provide
    def shell(self, argv: list[str], timeout: float = 60.0) -> Completed:
        """Run an argv list on the device (quoted for its shell; never a string built from input)."""
        raise NotImplementedError

    def copy_to(self, local: Path, remote: str) -> Completed:
        raise NotImplementedError

    def copy_from(self, remote: str, local: Path) -> Completed:
        raise NotImplementedError

    def lost(self, done: Completed) -> bool:
        """Did this command fail because the device went away (not because the program failed)?"""
        return False

    # ---- shared behaviour
    def _check(self, done: Completed, what: str) -> Completed:
        if done.timed_out or self.lost(done):
            raise TargetError(
                f"device {self.device!r} became unreachable while {what}: {done.stderr.strip()[-300:] or 'no answer'}",
                "check its power and network; nothing was kept; re-run when it is back",
            )
        if done.returncode != 0:
            msg = (done.stderr or done.stdout).strip()[-400:]
            hint = (
                "the device is out of disk space: free some and re-run"
                if "no space left" in msg.lower()
                else "check the device's remote_dir permissions and free space"
            )
            raise RunnerError(f"on device {self.device!r}, {what} failed (exit {done.returncode}): {msg}", hint)
        return done

    def prepare(self) -> None:
        self._check(self.shell(["mkdir", "-p", self.remote_dir], timeout=30), "preparing its working folder")

    def workdir(self, name: str) -> str:
        path = f"{self.remote_dir}/work/{name}-{secrets.token_hex(4)}"
        self._check(self.shell(["mkdir", "-p", path]), f"creating {path}")
        return path

    def push(self, local: Path, remote: str) -> None:
        done = self.copy_to(Path(local), remote)
        if done.returncode != 0 and not self.lost(done):
            free = self.free_bytes(self.remote_dir)
            need = Path(local).stat().st_size
            if free is not None and free < need + (1 << 20):
                raise RunnerError(
                    f"device {self.device!r} has no space left in {self.remote_dir}: {free // 1024} KB free, copying {Path(local).name} needs {need // 1024} KB",
                    "the device is out of disk space: free some (or set remote_dir to a bigger filesystem) and re-run",
                )
        self._check(done, f"copying {Path(local).name} to {remote}")

    def free_bytes(self, path: str) -> int | None:
        """Free space at path on the device, from `df -Pk`."""
        done = self.shell(["df", "-Pk", path], timeout=30)
        lines = done.stdout.strip().splitlines()
        try:
            return int(lines[-1].split()[3]) * 1024 if done.returncode == 0 and len(lines) >= 2 else None
        except (IndexError, ValueError):
            return None

    def pull(self, remote: str, local: Path) -> None:
        self._check(self.copy_from(remote, Path(local)), f"copying {remote} back")

    def cleanup(self, remote_dir: str) -> None:
        if remote_dir.startswith(self.remote_dir + "/"):
            self.shell(["rm", "-rf", remote_dir], timeout=60)

    def read_file(self, path: str) -> str | None:
        done = self.shell(["cat", path], timeout=30)
        return done.stdout if done.returncode == 0 else None

    def install_runner(self, binary) -> str:
        """Push the runner and its libraries once per binary sha; a half-pushed bundle is never
        used (it is built in a temporary folder and renamed)."""
        if binary is None:
            raise RunnerError("the native runner is not built", "sme2 build-runner --target ...")
        final = self.runner_dir(binary)
        if self.shell(["test", "-x", f"{final}/sme2_runner"]).returncode == 0:
            return f"{final}/sme2_runner"
        tmp = f"{final}.partial-{secrets.token_hex(3)}"
        try:
            self._check(self.shell(["mkdir", "-p", f"{tmp}/lib"]), "creating the runner folder")
            self.push(binary.path, f"{tmp}/sme2_runner")
            for lib in RUNNER_LIBS:
                src = Path(binary.lib_dir) / lib if binary.lib_dir else None
                if src is not None and src.exists():
                    self.push(src, f"{tmp}/lib/{lib}")
            self._check(self.shell(["chmod", "755", f"{tmp}/sme2_runner"]), "making the runner executable")
            self._check(self.shell(["mv", tmp, final]), "installing the runner")
        except BaseException:
            self.shell(["rm", "-rf", tmp])
            raise
        return f"{final}/sme2_runner"

    def runner_dir(self, binary) -> str:
        return f"{self.remote_dir}/runners/{binary.sha256[:16]}"

    def forget_runner(self, binary) -> None:
        if binary is not None:
            self.shell(["rm", "-rf", self.runner_dir(binary)])

    def remote_argv(self, argv: list[str], env: dict | None, cpus: str | None) -> list[str]:
        bundle = str(Path(argv[0]).parent)
        out = ["env", f"LD_LIBRARY_PATH={bundle}/lib", *[f"{k}={v}" for k, v in (env or {}).items()]]
        if cpus is not None:
            out += self.pin_argv(cpus)
        return out + argv

    def pin_argv(self, cpus: str) -> list[str]:
        return ["taskset", "-c", cpus]

    def run(self, argv: list[str], timeout: float, env: dict | None = None, cpus: str | None = None) -> Completed:
        remote = self.remote_argv(argv, env, cpus)
        if self.kill_on_disconnect:
            remote = ["sh", "-c", KILL_ON_DISCONNECT, "sme2-run", *remote]
        done = self.shell(remote, timeout=timeout)
        if self.lost(done):
            self._check(done, "running the program")
        return done


def quote(argv: list[str]) -> str:
    """One string for a remote shell, every element quoted."""
    return shlex.join(argv)
