"""Stage 1, model packages: the model spec contract, the registry that discovers and validates
packages (native and Arm-kit), local checkpoints."""

__all__ = [  # the sub-package's public modules: `from kit.models import *`, or import each by name
    "checkpoint",
    "examples",
    "exitguard",
    "modelspec",
    "registry",
]
