"""Stage 7, profiling sessions: timing + ETDump runs of one export on one target, interleaved
SME2 on/off blocks, run folders written atomically."""

__all__ = [  # the sub-package's public modules: `from kit.profile import *`, or import each by name
    "armkit",
    "config",
    "experiments",
    "runrecord",
    "runsummary",
    "session",
]
