"""Reading the JSON files a run or an export folder holds, with errors that name the file."""

from __future__ import annotations

import json
from pathlib import Path

from kit.core.errors import RunFolderError


def read_json(path: Path, what: str):
    """A JSON file of a run folder; a missing, unreadable or corrupt file is a RunFolderError naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError as e:
        raise RunFolderError(f"{path} is missing", f"{what} is incomplete: re-run it, or delete the folder") from e
    except OSError as e:
        raise RunFolderError(f"cannot read {path}: {e.strerror}", "check the file's permissions") from e
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError, too deeply nested
        raise RunFolderError(
            f"{path} is not valid JSON ({str(e)[:200]})", f"{what} is corrupt: re-run it, or delete the folder"
        ) from e
