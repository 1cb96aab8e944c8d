"""One error type for everything a user can fix: what went wrong and what to do about it."""

from __future__ import annotations


class Sme2Error(Exception):
    """An error with a user-facing message and a hint saying what to do next."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  -> {self.hint}" if self.hint else self.message

    def __reduce__(self):  # keep the hint across process boundaries (parallel exports)
        return (type(self), (self.message, self.hint))


class NameError_(Sme2Error):
    """A model, dtype, device or target name that fails validation."""


class ModelPackageError(Sme2Error):
    """A model package under models/ that cannot be imported or used."""


class ExportError(Sme2Error):
    """Exporting a model variant to a .pte failed or produced a wrong program."""


class RunnerError(Sme2Error):
    """Building or running a runner failed (crash, hang, non-zero exit, missing compiler)."""


class TraceError(Sme2Error):
    """An ETDump that is corrupt, truncated or belongs to another program."""


class TargetError(Sme2Error):
    """A device or target that is unknown, unreachable or lacks a capability."""


class LabelError(Sme2Error):
    """A run whose trace contradicts its target's SME2 flag (SME2 kernels in an sme2-off run, none
    in an sme2-on run): refused, never stored under the wrong label."""


class WarehouseError(Sme2Error):
    """The DuckDB warehouse is locked, corrupt or asked something invalid."""


class RunFolderError(Sme2Error):
    """A run folder whose files (run.json, timing.json, ...) are missing, corrupt or hand-crafted."""


class DiskFullError(Sme2Error, OSError):
    """A write that ran out of space (ENOSPC, EDQUOT). Also an OSError, so code that tolerates a
    failed write keeps doing so; `errno` is ENOSPC."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message, hint)
        self.errno = 28  # errno.ENOSPC
        self.strerror = message


class DataRootError(Sme2Error):
    """A path that would leave the data root (a crafted or corrupted name read back from storage)."""
