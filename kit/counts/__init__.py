"""Stage 6b, instruction counts of emulated runs: a QEMU TCG plugin (sme2_counts.c) and the
plugin-capable QEMU it needs (`sme2 setup --counts`), the counts matched to ETDump events, a cost
model that turns them into estimated cycles, and a run's count table. Deterministic numbers of an
emulated CPU, never hardware times."""

__all__ = [  # the sub-package's public modules: `from kit.counts import *`, or import each by name
    "attribution",
    "costmodel",
    "plugin_log",
    "qemu_build",
    "table",
]
