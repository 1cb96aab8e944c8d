"""Loading a local checkpoint into a random-initialized model, with errors that name the mismatch.
Never downloads anything."""

from __future__ import annotations

from pathlib import Path

from kit.core.errors import ModelPackageError


def load_into(model, path: str | Path, model_name: str) -> None:
    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelPackageError(
            f"checkpoint {path} for model {model_name!r} does not exist",
            "pass a local .pt/.pth file; weights are never downloaded",
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad file
        raise ModelPackageError(
            f"checkpoint {path} for model {model_name!r} cannot be read: {e}", "pass a state_dict saved with torch.save"
        ) from e
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise ModelPackageError(
            f"checkpoint {path} for model {model_name!r} is not a state_dict", "save model.state_dict(), not the module"
        )
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shape = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or shape:
        detail = "; ".join(
            part
            for part in (
                f"missing {len(missing)} keys (e.g. {missing[:3]})" if missing else "",
                f"unexpected {len(unexpected)} keys (e.g. {unexpected[:3]})" if unexpected else "",
                f"{len(shape)} shape mismatches (e.g. {shape[0]}: checkpoint {tuple(state[shape[0]].shape)} vs model {tuple(own[shape[0]].shape)})"
                if shape
                else "",
            )
            if part
        )
        raise ModelPackageError(
            f"checkpoint {path} does not match model {model_name!r}: {detail}",
            "use a checkpoint of this architecture and size",
        )
    model.load_state_dict(state)
