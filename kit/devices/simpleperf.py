"""What runs on an Android phone for `sme2 profile --simpleperf`: the phone's own simpleperf recording
one run (DWARF call graphs), then reporting its samples there, as text for kit.trace.simpleperf and
as the protobuf the Firefox Profiler and Android Studio open. Argv lists only; the adb transport runs
them and copies the files back."""

from __future__ import annotations

DATA = "perf.data"
SAMPLES_TEXT = "samples.txt"
PROTO = "perf.trace"
FILES = (DATA, SAMPLES_TEXT, PROTO)
FREQUENCY = 4000  # samples per second per thread: ~0.25 ms resolution, small enough files


def record_prefix(data_path: str, frequency: int = FREQUENCY) -> list[str]:
    """The argv that records the run given after `--` (-g: DWARF call graphs)."""
    return ["simpleperf", "record", "-g", "-f", str(int(frequency)), "-o", data_path, "--"]


def report_argvs(data_path: str, folder: str) -> list[list[str]]:
    """The text report (every sample with its call chain) and the protobuf one, into `folder`."""
    return [
        ["simpleperf", "report-sample", "-i", data_path, "--show-callchain", "-o", f"{folder}/{SAMPLES_TEXT}"],
        ["simpleperf", "report-sample", "--protobuf", "-i", data_path, "-o", f"{folder}/{PROTO}"],
    ]
