"""ExecuTorch's own example models by name (`sme2 export --model mv3`), as Arm's exporter offers
them: the executorch wheel ships `executorch.examples.models` (MODEL_NAME_TO_MODEL: mv2, mv3,
resnet18, vit, add_mul, ...), classes with the same EagerModelBase contract Arm-kit packages use.

A model package of the same name in the models folder wins. An example that needs a package this
environment lacks (torchvision for mv2/mv3/resnet/vit) is refused naming it. Nothing is downloaded:
an example that asks torch.hub for pretrained weights is built randomly initialized instead, like
every model here (latency does not depend on trained weights; --checkpoint loads real ones), and
one that downloads any other file is refused."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
from pathlib import Path
from typing import Iterator

import logging

from kit.core.errors import ModelPackageError
from kit.models import modelspec

PREFIX = "executorch.examples.models"
log = logging.getLogger(__name__)


def catalog() -> dict[str, tuple[str, str]]:
    """{name: (module, class)} of the installed executorch's example models ({} without it)."""
    try:
        from executorch.examples.models import MODEL_NAME_TO_MODEL
    except ImportError:
        return {}
    return dict(MODEL_NAME_TO_MODEL)


def _source(module: str) -> Path:
    base = Path(importlib.import_module(PREFIX).__file__).parent
    folder = base / module.replace(".", "/")
    return folder if folder.is_dir() else folder.with_suffix(".py")


def _hash(path: Path) -> str:
    h = hashlib.sha256(str(path.name).encode())
    files = sorted(p for p in path.rglob("*.py")) if path.is_dir() else [path]
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()


class _NotDownloaded(dict):
    """What torch.hub's state-dict download returns inside `no_downloads`: loading it is skipped, so
    the model keeps its random initialization (the kit's default; --checkpoint loads real weights)."""


@contextlib.contextmanager
def no_downloads(name: str) -> Iterator[list[str]]:
    """Nothing is fetched while example `name` is built. Pretrained weights it asks for are
    skipped (the model stays randomly initialized; the URLs are yielded so the caller can say so);
    any other file download fails with a ModelPackageError."""
    import torch.hub
    import torch.nn

    skipped: list[str] = []

    def skip_weights(url, *args, **kwargs):
        skipped.append(str(url))
        return _NotDownloaded()

    def refuse(url, *args, **kwargs):
        raise ModelPackageError(
            f"executorch's example model {name!r} downloads a file ({url}); sme2 never downloads at run time",
            "write a model package that builds it from local files (docs/onboarding.md)",
        )

    original_load = torch.nn.Module.load_state_dict

    def load_state_dict(module, state_dict, *args, **kwargs):
        if isinstance(state_dict, _NotDownloaded):
            return None  # keep the random initialization
        return original_load(module, state_dict, *args, **kwargs)

    saved = (torch.hub.load_state_dict_from_url, torch.hub.download_url_to_file)
    torch.hub.load_state_dict_from_url, torch.hub.download_url_to_file = skip_weights, refuse
    torch.nn.Module.load_state_dict = load_state_dict
    try:
        yield skipped
    finally:
        torch.hub.load_state_dict_from_url, torch.hub.download_url_to_file = saved
        torch.nn.Module.load_state_dict = original_load


def spec_for(name: str) -> tuple[modelspec.ModelSpec, Path, str] | None:
    """(spec, source path, content hash) of example `name`, or None when there is no such example.
    A ModelPackageError when it exists but cannot be loaded here (a missing dependency)."""
    entry = catalog().get(name)
    if entry is None:
        return None
    module_name, class_name = entry
    try:
        module = importlib.import_module(f"{PREFIX}.{module_name}")
    except ImportError as e:
        missing = getattr(e, "name", None) or str(e)
        raise ModelPackageError(
            f"executorch's example model {name!r} needs {missing!r}, which this environment cannot import "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})",
            f"install {missing} for torch {_torch_version()} (PyPI's torchvision does not load beside torch 2.13.0's "
            "CPU build), or write a model package for it (docs/onboarding.md)",
        ) from e
    cls = getattr(module, class_name)
    base = modelspec.from_arm_kit(name, cls)

    def guarded_build(size, checkpoint):
        with no_downloads(name) as skipped:
            model = base.build(size, checkpoint)
        if skipped and checkpoint is None:
            log.info("%s: pretrained weights not downloaded (%s); randomly initialized", name, skipped[0])
        return model

    def guarded_inputs(size):
        with no_downloads(name):
            return base.example_inputs(size)

    source = _source(module_name)
    spec = modelspec.replace_build(base, guarded_build, guarded_inputs)
    spec.description = f"ExecuTorch example model {name} ({module_name}.{class_name}); one input size"
    return spec, source, _hash(source)


def _torch_version() -> str:
    try:
        import torch

        return torch.__version__
    except ImportError:
        return "?"
