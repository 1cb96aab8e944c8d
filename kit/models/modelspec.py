"""What a model package declares, as one validated type, plus the adapter for Arm-kit packages.

Native packages put `MODEL = ModelSpec(...)` in `models/<name>/model.py`. Packages written for Arm's
SME2 kit (`EagerModelBase` subclasses registered with `register_model`) are wrapped unchanged."""

from __future__ import annotations

from abc import ABC, abstractmethod
import dataclasses
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
    # int8 flavour: one of QUANT_TYPES (Arm's kit's xnnpack_quantization names), None = our defaults
    # (int8 static per-channel, int8-dynamic dynamic per-channel).
    quantization: str | None = None
    delegation: bool = True  # False: lower without the XNNPACK partitioner (Arm's xnnpack_delegation)

    def __post_init__(self):
        names.model_name(self.name)
        if self.quantization is not None and self.quantization not in QUANT_TYPES:
            raise ModelPackageError(
                f"model {self.name!r}: unknown quantization {self.quantization!r}",
                f"use one of {', '.join(QUANT_TYPES)} (Arm's QuantType names), or leave it unset",
            )
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

    def quantizer_options(self, dtype: str) -> dict:
        """How an int8 dtype is quantized: XNNPACKQuantizer's symmetric config options."""
        if self.quantization is None:
            return {"is_per_channel": True, "is_dynamic": dtype == "int8-dynamic"}
        return dict(QUANT_TYPES[self.quantization] or {})

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


# Arm's kit's quantization names (executorch.examples.xnnpack.QuantType) -> the XNNPACKQuantizer
# options its `quantize()` uses for them; None: the package is not quantized.
QUANT_TYPES: dict[str, dict | None] = {
    "NONE": None,
    "STATIC_PER_TENSOR": {"is_per_channel": False, "is_dynamic": False},
    "STATIC_PER_CHANNEL": {"is_per_channel": True, "is_dynamic": False},
    "DYNAMIC_PER_CHANNEL": {"is_per_channel": True, "is_dynamic": True},
}
# Which of our int8 dtypes each quantization type exports as.
_INT8_DTYPE = {"STATIC_PER_TENSOR": "int8", "STATIC_PER_CHANNEL": "int8", "DYNAMIC_PER_CHANNEL": "int8-dynamic"}


def quant_type_name(value) -> str | None:
    """A QuantType given as its name ("STATIC_PER_CHANNEL") or as the enum member itself."""
    if value is None:
        return None
    name = getattr(value, "name", value)
    if not isinstance(name, str) or name.upper() not in QUANT_TYPES:
        raise ModelPackageError(
            f"xnnpack_quantization={value!r} is not a quantization type",
            f"use one of {', '.join(QUANT_TYPES)} (executorch.examples.xnnpack.QuantType), or None",
        )
    return name.upper()


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


def from_arm_kit(name: str, cls: type, xnnpack_quantization=None, xnnpack_delegation: bool = True) -> ModelSpec:
    """Wrap an Arm-kit model class. It has one input size, so `small` and `full` are the same.

    Its registration options are honoured: `xnnpack_quantization` picks the one int8 dtype the model
    exports in (STATIC_* -> int8, DYNAMIC_PER_CHANNEL -> int8-dynamic, NONE -> no int8 at all; unset:
    both, with our defaults) and how it is quantized; `xnnpack_delegation=False` lowers without the
    XNNPACK partitioner, as Arm's export does."""
    for method in ("get_eager_model", "get_example_inputs"):
        if not callable(getattr(cls, method, None)):
            raise ModelPackageError(
                f"Arm-kit model {name!r} ({cls.__name__}) has no {method}()",
                "define get_eager_model() and get_example_inputs() on the registered class",
            )
    try:
        quantization = quant_type_name(xnnpack_quantization)
    except ModelPackageError as e:
        raise ModelPackageError(f"register_model({name!r}, ...): {e.message}", e.hint) from None
    if not isinstance(xnnpack_delegation, bool):
        raise ModelPackageError(
            f"register_model({name!r}, ...): xnnpack_delegation must be True or False, not {xnnpack_delegation!r}",
            "pass xnnpack_delegation=True (the default) or False",
        )
    unsupported = {}
    if quantization is not None:
        why = f"registered with xnnpack_quantization={quantization!r}"
        for dtype in ("int8", "int8-dynamic"):
            if _INT8_DTYPE.get(quantization) != dtype:
                unsupported[dtype] = why + (
                    f": export {_INT8_DTYPE[quantization]}" if quantization in _INT8_DTYPE else ": not quantized"
                )

    def positional(instance) -> tuple:
        inputs = instance.get_example_inputs()
        return tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)

    def keywords(instance) -> dict:
        kw = (
            instance.get_example_kwarg_inputs() if callable(getattr(instance, "get_example_kwarg_inputs", None)) else {}
        )
        return dict(kw or {})

    def build(_size: SizeParams, checkpoint: str | None):
        instance = cls()
        model = instance.get_eager_model()
        if checkpoint:
            load_into(model, checkpoint, name)
        kw = keywords(instance)
        # Keyword example inputs become trailing positional ones (the program and every runner
        # take positional inputs): a thin module maps them back to the model's keywords.
        return (with_keywords(model, len(positional(instance)), list(kw)) if kw else model).eval()

    def example_inputs(_size: SizeParams) -> tuple:
        instance = cls()
        return positional(instance) + tuple(keywords(instance).values())

    options = []
    if quantization:
        options.append(f"xnnpack_quantization={quantization}")
    if not xnnpack_delegation:
        options.append("xnnpack_delegation=False")
    return ModelSpec(
        name=name,
        build=build,
        example_inputs=example_inputs,
        sizes={"small": {}, "full": {}},
        description=f"Arm-kit package ({cls.__name__}{', ' + ', '.join(options) if options else ''}); one input size",
        unsupported=unsupported,
        quantization=quantization,
        delegation=xnnpack_delegation,
    )


def with_keywords(model, n_positional: int, keyword_names: list[str]):
    """`model` called as model(*args[:n], **dict(zip(keyword_names, args[n:]))): keyword example
    inputs of an Arm-kit or ExecuTorch example model passed positionally, in a fixed order."""
    import torch

    class WithKeywords(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, *args):
            return self.inner(*args[:n_positional], **dict(zip(keyword_names, args[n_positional:])))

    return WithKeywords()


def replace_build(spec: ModelSpec, build=None, example_inputs=None) -> ModelSpec:
    """The same spec with its model builder (and example inputs) replaced."""
    return dataclasses.replace(spec, build=build or spec.build, example_inputs=example_inputs or spec.example_inputs)
