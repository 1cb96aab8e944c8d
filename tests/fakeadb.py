#!/usr/bin/env python3
"""A phone on this machine, for the adb transport's tests: `adb` answering like platform-tools with
one device whose shell is this machine's /bin/sh (so the real runner runs), whose `logcat` replays a
recorded threadtime log for the pid asked for, and whose `simpleperf` runs the program and replays
recorded reports. Every call is appended to $FAKE_ADB_STATE/journal (one JSON argv per line).

No phone is reachable from CI: this exercises everything on our side of adb (argv, quoting, push
and pull, the pid marker, logcat clearing and reading, simpleperf's files) with real processes;
what a real phone prints is what the recordings in tests/data/android/ hold."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

STATE = Path(os.environ["FAKE_ADB_STATE"])
DATA = Path(__file__).parent / "data" / "android"
SERIAL = os.environ.get("FAKE_ADB_SERIAL", "FAKE0001")


def journal(argv: list[str]) -> None:
    with (STATE / "journal").open("a") as f:
        f.write(json.dumps(argv) + "\n")


def device_bin() -> Path:
    """Commands the phone has and this machine lacks: settings, svc, getprop, simpleperf."""
    folder = STATE / "bin"
    if not folder.is_dir():
        folder.mkdir(parents=True)
        scripts = {
            "settings": '#!/bin/sh\n[ "$1" = get ] && echo 1\nexit 0\n',
            "svc": "#!/bin/sh\nexit 0\n",
            "getprop": "#!/bin/sh\necho '[ro.product.model]: [Fake SME2 Phone]'\necho '[ro.soc.model]: [FAKE1]'\n"
            "echo '[ro.build.version.release]: [15]'\n",
            "simpleperf": f'#!/bin/sh\nexec {sys.executable} {Path(__file__).absolute()} --simpleperf "$@"\n',
        }
        for name, text in scripts.items():
            (folder / name).write_text(text)
            (folder / name).chmod(0o755)
    return folder


def simpleperf(args: list[str]) -> int:
    journal(["simpleperf", *args])
    out = args[args.index("-o") + 1] if "-o" in args else None
    if args[0] == "record":
        program = args[args.index("--") + 1 :]
        rc = subprocess.run(program).returncode
        Path(out).write_bytes(b"PERFILE2" + b"\0" * 56)  # a perf.data header's magic
        return rc
    if args[0] == "report-sample":
        if "--protobuf" in args:
            Path(out).write_bytes(b"SIMPLEPERF\x01\x00" + b"\0" * 4)
        else:
            shutil.copyfile(DATA / "simpleperf-report-sample.txt", out)
        return 0
    return 2


def main(argv: list[str]) -> int:
    if argv[:1] == ["--simpleperf"]:
        return simpleperf(argv[1:])
    journal(argv)
    if argv == ["devices"]:
        print(f"List of devices attached\n{SERIAL}\tdevice")
        return 0
    if argv[:2] != ["-s", SERIAL]:
        print(f"adb: device '{argv[1] if len(argv) > 1 else ''}' not found", file=sys.stderr)
        return 1
    cmd, rest = argv[2], argv[3:]
    if cmd == "shell":
        env = {**os.environ, "PATH": f"{device_bin()}:{os.environ['PATH']}"}
        return subprocess.run(["sh", "-c", rest[0]], env=env).returncode
    if cmd == "push":
        shutil.copyfile(rest[0], rest[1])
        return 0
    if cmd == "pull":
        shutil.copyfile(rest[0], rest[1])
        return 0
    if cmd == "logcat":
        if rest == ["-c"]:
            return 0
        pid = rest[rest.index("--pid") + 1]
        lines = (DATA / "logcat-threadtime.txt").read_text().replace("{pid}", pid).splitlines()
        print("\n".join(line for line in lines if line.split()[2] == pid))  # logcat's own --pid filter
        return 0
    print(f"fake adb: unknown command {cmd}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
