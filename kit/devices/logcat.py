"""The runner's lines of an Android phone's log. XNNPACK (and ExecuTorch's Android logging) write
to logcat there, not to stdout (XNNPACK's src/log.c: XNN_LOG_TO_STDIO is 0 under __ANDROID__), so
a kernel-log run's "Using ... microkernel" lines exist only in logcat.

The adb transport clears the log before a run, learns the runner's pid from the line the run's
shell prints before it execs the runner (PID_MARKER), and reads back only that pid's lines
(`logcat -d -v threadtime --pid N`, Android 7+; filtered again here, as other processes' lines
must never reach a run's log)."""

from __future__ import annotations

import re

PID_MARKER = "SME2_RUNNER_PID="
# The run's shell prints its pid, then execs the program (same pid): "$$" is the runner's pid.
PID_WRAPPER = ["sh", "-c", f'echo "{PID_MARKER}$$" >&2; exec "$@"', "sme2-run"]
SECTION = "--- logcat (the runner's lines)"

# threadtime: "12-07 16:20:01.123  4242  4250 D XNNPACK : Using igemm microkernel '...'"
_THREADTIME = re.compile(
    r"^(?:\d{4}-)?\d\d-\d\d\s+\d\d:\d\d:\d\d\.\d+\s+(?:\S+\s+)?(?P<pid>\d+)\s+(?P<tid>\d+)\s+"
    r"(?P<level>[VDIWEFS])\s+(?P<tag>.*?)\s*:\s(?P<message>.*)$"
)


def split_pid(stderr: str) -> tuple[int | None, str]:
    """(the runner's pid, stderr without the marker line)."""
    pid, kept = None, []
    for line in stderr.splitlines(keepends=True):
        if pid is None and line.startswith(PID_MARKER) and line[len(PID_MARKER) :].strip().isdigit():
            pid = int(line[len(PID_MARKER) :].strip())
        else:
            kept.append(line)
    return pid, "".join(kept)


def read_argv(adb_argv: list[str], pid: int) -> list[str]:
    """`adb -s SERIAL logcat -d -v threadtime --pid N`: the log so far, of one process only."""
    return [*adb_argv, "logcat", "-d", "-v", "threadtime", "--pid", str(int(pid))]


def clear_argv(adb_argv: list[str]) -> list[str]:
    return [*adb_argv, "logcat", "-c"]


def runner_lines(text: str, pid: int) -> list[str]:
    """`TAG: message` for every threadtime line of process `pid` (other processes' lines dropped)."""
    out = []
    for line in text.splitlines():
        m = _THREADTIME.match(line)
        if m and int(m.group("pid")) == pid:
            out.append(f"{m.group('level')} {m.group('tag')}: {m.group('message')}")
    return out


def with_logcat(stderr: str, lines: list[str]) -> str:
    """The run's stderr with the runner's log lines appended as their own section."""
    if not lines:
        return stderr
    return stderr.rstrip("\n") + ("\n" if stderr.strip() else "") + SECTION + "\n" + "\n".join(lines) + "\n"
