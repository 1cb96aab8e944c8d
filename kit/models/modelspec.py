"""What a model package declares, as one validated type, plus the adapter for Arm-kit packages.

Native packages put `MODEL = ModelSpec(...)` in `models/<name>/model.py`. Packages written for Arm's
SME2 kit (`EagerModelBase` subclasses registered with `register_model`) are wrapped unchanged."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable

from kit.core import names
from kit.core.errors import ModelPackageError
from kit.models.checkpoint import load_into

SizeParams = dict[str, Any]


@dataclass
class ModelSpec:
    """A model package's contract.

    build(size_params, checkpoint) -> eval-mode nn.Module, random-initialized when checkpoint is None.
    example_inputs(size_params) -> tuple of tensors (the runners feed exactly these, saved at export).
    calibration_inputs(size_params) -> list of input tuples for static int8 (default: the example).
    sizes: named input sizes; at least `small` (tests, emulated targets) and `full` (published).
    unsupported: dtype -> reason, for dtypes XNNPACK cannot take for this model.
    """

    name: str
    build: Callable[[SizeParams, str | None], Any]
    example_inputs: Callable[[SizeParams], tuple]
    sizes: dict[str, SizeParams]
    dtypes: tuple[str, ...] = names.DTYPES
    calibration_inputs: Callable[[SizeParams], list[tuple]] | None = None
    description: str = ""
    unsupported: dict[str, str] = field(default_factory=dict)
    tolerances: dict[str, float] = field(default_factory=dict)  # dtype -> relative tolerance override

    def __post_init__(self):
        names.model_name(self.name)
        for d in self.dtypes:
            names.dtype(d)
        for s in self.sizes:
            names.size_name(s)
        missing = {"small", "full"} - set(self.sizes)
        if missing:
            raise ModelPackageError(
                f"model {self.name!r} does not declare sizes {sorted(missing)}",
                "add `small` (seconds to export) and `full` (published resolution) to sizes",
            )

    @property
    def supported_dtypes(self) -> tuple[str, ...]:
        """The declared dtypes this model exports in (declared minus the unsupported ones)."""
        return tuple(d for d in self.dtypes if d not in self.unsupported)

    def size(self, size: str) -> SizeParams:
        if size not in self.sizes:
            raise ModelPackageError(
                f"model {self.name!r} has no size {size!r}", f"choose one of {', '.join(self.sizes)}"
            )
        return dict(self.sizes[size])

    def check_dtype(self, dtype: str) -> None:
        names.dtype(dtype)
        if dtype in self.unsupported:
            raise ModelPackageError(
                f"model {self.name!r} does not support {dtype}: {self.unsupported[dtype]}",
                f"choose one of {', '.join(self.supported_dtypes)}",
            )
        if dtype not in self.dtypes:
            raise ModelPackageError(
                f"model {self.name!r} does not support dtype {dtype}",
                f"choose one of {', '.join(self.supported_dtypes)}",
            )


class EagerModelBase(ABC):
    """Arm's kit interface (`from ..model_base import EagerModelBase`), accepted unchanged."""

    @abstractmethod
    def get_eager_model(self):
        """Return the eval-mode eager module."""

    @abstractmethod
    def get_example_inputs(self) -> tuple:
        """Return positional example inputs."""

    def get_example_kwarg_inputs(self) -> dict:
        return {}

    def get_dynamic_shapes(self):
        return None


def from_arm_kit(name: str, cls: type) -> ModelSpec:
    """Wrap an Arm-kit model class. It has one input size, so `small` and `full` are the same."""
    for method in ("get_eager_model", "get_example_inputs"):
        if not callable(getattr(cls, method, None)):
            raise ModelPackageError(
                f"Arm-kit model {name!r} ({cls.__name__}) has no {method}()",
                "define get_eager_model() and get_example_inputs() on the registered class",
            )

    def build(_size: SizeParams, checkpoint: str | None):
        model = cls().get_eager_model()
        if checkpoint:
            load_into(model, checkpoint, name)
        return model.eval()

    def example_inputs(_size: SizeParams) -> tuple:
        inputs = cls().get_example_inputs()
        return tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)

    return ModelSpec(
        name=name,
        build=build,
        example_inputs=example_inputs,
        sizes={"small": {}, "full": {}},
        description=f"Arm-kit package ({cls.__name__}); one input size",
    )
