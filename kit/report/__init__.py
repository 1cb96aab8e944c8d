"""Stage 10, for people and other tools: reports and charts, Perfetto traces, HUD export, Arm-kit
import."""

__all__ = [  # the sub-package's public modules: `from kit.report import *`, or import each by name
    "armkit",
    "builder",
    "charts",
    "comparison",
    "explorer",
    "figures",
    "hud",
    "perfetto",
    "prose",
    "render",
    "sections",
]
