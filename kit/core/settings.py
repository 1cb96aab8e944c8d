"""The settings of an orchestrated run, as one typed, validated object: where the data root and the
model packages are, what to measure (size, iterations, warmup, threads, runner, targets), how long a
run may take, and the bounds the gates use. `kit.pipeline` takes it; the Dagster resource builds it
from run config; a bad value fails here with the field, the value and the rule."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from kit.core import environment, limits, names
from kit.core.errors import Sme2Error
from kit.core.home import DataRoot

RUNNERS = ("native", "pybind")
# Settings the kit reads as environment variables where it needs them (the data root and the
# packages folder are passed explicitly): set, they override the variable (`overrides`).
OVERRIDING = ("tools", "export_cache", "shared_store", "shared_catalog")


class SettingsError(Sme2Error):
    """A settings value outside its allowed range or format."""


def checked(check, value, *args):
    """check(value, *args) (a kit.core.names or kit.core.limits rule) inside a pydantic validator:
    its result, or its error as the field's message. Settings and experiment configs share the rules."""
    try:
        return check(value, *args)
    except Sme2Error as e:
        raise ValueError(f"{e.message} ({e.hint})") from None


# Counts of iterations with kit.core.limits' rule, for Measure and the experiment configs' `runs`.
Iterations = Annotated[int, BeforeValidator(lambda v: checked(limits.check_iterations, v, "iterations"))]
Warmups = Annotated[int, BeforeValidator(lambda v: checked(limits.check_iterations, v, "warmup", 0))]


class Measure(BaseModel):
    """What to measure, the one shape every front end fills (`sme2 profile`'s options, the MCP
    profile tool, `sme2 pipeline`, the Dagster resource through Settings): the model size, measured
    and warmup iterations, thread counts, runner kind and the hang timeout, each checked by the
    kit.core.limits rule the runner invocation applies too."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: str | None = Field(
        None, description="model size; empty: each device's default (full on hardware, small emulated)"
    )
    iterations: Iterations = Field(
        limits.DEFAULT_ITERATIONS, description="measured iterations per run (warmups excluded)"
    )
    warmup: Warmups = Field(limits.DEFAULT_WARMUP, description="warmup iterations per run")
    threads: list[int] | None = Field(None, description="thread counts; empty: each device's list")
    runner: Literal["native", "pybind"] = Field("native", description="runner kind")
    timeout_s: float = Field(limits.RUN_TIMEOUT_S, description="limit for one runner invocation, seconds")

    @field_validator("size", mode="before")
    @classmethod
    def _empty_size_is_unset(cls, v):
        return None if v == "" else v

    @field_validator("threads", mode="before")
    @classmethod
    def _no_threads_is_unset(cls, v):
        return None if v == [] else v

    @field_validator("size")
    @classmethod
    def _size(cls, v):
        if v is not None:
            checked(names.size_name, v)
        return v

    @field_validator("timeout_s", mode="before")
    @classmethod
    def _timeout(cls, v):
        return checked(limits.check_timeout, v, "timeout_s")

    @field_validator("threads")
    @classmethod
    def _threads(cls, v):
        if v is None:
            return v
        for t in v:
            checked(limits.check_threads, t, "threads")
        problem = limits.thread_list_problem(v)
        if problem:
            raise ValueError(f"thread counts {problem}")
        return v

    @classmethod
    def of(cls, **values):
        """Build and validate; a bad value raises a SettingsError naming each field and its rule."""
        try:
            return cls(**values)
        except ValidationError as e:
            problems = []
            for err in e.errors():
                field = ".".join(str(p) for p in err["loc"]) or "settings"
                msg = err["msg"].removeprefix("Value error, ")
                got = f" (got {err.get('input')!r})" if repr(err.get("input")) not in msg else ""
                problems.append(f"{field}: {msg}{got}")
            raise SettingsError(
                "invalid settings: " + "; ".join(problems),
                "fix the value in the Dagster resource config (resources.sme2.config) or the command line",
            ) from None

    def measure(self) -> "Measure":
        """Only the measurement fields (a Settings is a Measure with more)."""
        return Measure(**{name: getattr(self, name) for name in Measure.model_fields})

    def size_on(self, device) -> str:
        """The size measured on a device: this one, else the device's default."""
        return self.size or device.size

    def iterations_on(self, device) -> int:
        """The iterations measured on a device: emulated devices cap them (max_iterations)."""
        return min(self.iterations, device.max_iterations) if device.max_iterations else self.iterations


class Settings(Measure):
    """Knobs of an orchestrated run (Dagster resource config, `sme2 pipeline`): what to measure
    (Measure's fields) plus where the data and packages are, which targets and the gates' bounds."""

    home: str | None = Field(None, description="data root; empty: $SME2_HOME, else ./.sme2")
    models_dir: str | None = Field(None, description="model packages folder; empty: $SME2_MODELS, else models/")
    targets: list[str] = Field(default_factory=list, description="targets; empty: every target of every enabled device")
    cv_bound_percent: float = Field(15.0, gt=0, description="stats_complete fails above this end-to-end CV")
    regression_block_ratio: float = Field(
        1.5, gt=1.0, description="a confirmed end-to-end slowdown by at least this factor blocks downstream assets"
    )
    categories_file: str | None = Field(
        None, description="operator category rules (TOML); empty: <data root>/categories.toml when present"
    )
    # Settings that are also environment variables (kit.core.environment.VARIABLES): set, they
    # override the variable for the run's processes (`overrides`), so a Dagster deployment can set
    # them in run config or with dg.EnvVar instead of the daemon's environment.
    tools: str | None = Field(
        None, description="tools folder shared by data roots; empty: $SME2_TOOLS, else <data root>/tools"
    )
    export_cache: str | None = Field(
        None, description="export cache folder ('off': none); empty: $SME2_EXPORT_CACHE, else ~/.cache/sme2/exports"
    )
    shared_store: str | None = Field(None, description="the lab's DuckLake data folder; empty: $SME2_SHARED_STORE")
    shared_catalog: str | None = Field(
        None,
        description="the lab's DuckLake catalog (postgres:<conninfo> or sqlite:<file>); empty: $SME2_SHARED_CATALOG",
    )

    @field_validator(
        "home",
        "models_dir",
        "categories_file",
        "tools",
        "export_cache",
        "shared_store",
        "shared_catalog",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, v):
        return None if v == "" else v

    @field_validator("home", "models_dir", "tools", "export_cache", "shared_store", "shared_catalog")
    @classmethod
    def _one_line(cls, v):
        if v is not None and any(c in v for c in "\0\n\r"):
            raise ValueError("a path or address on one line, without NUL")
        return v

    @field_validator("shared_catalog")
    @classmethod
    def _catalog(cls, v):
        if v is not None and not v.startswith(("postgres:", "sqlite:")):
            raise ValueError("postgres:<libpq conninfo> or sqlite:<file>")
        return v

    @field_validator("targets")
    @classmethod
    def _targets(cls, v):
        for t in v:
            checked(names.Target.parse, t)
        return v

    @field_validator("categories_file")
    @classmethod
    def _rules(cls, v):
        if v is not None and not Path(v).expanduser().is_file():
            raise ValueError(f"no category rules file at {v}")
        return v

    def overrides(self) -> dict[str, str]:
        """The environment variables a run with these settings sets (OVERRIDING fields that are set)."""
        return {
            v.name: str(getattr(self, v.setting))
            for v in environment.VARIABLES
            if v.setting in OVERRIDING and getattr(self, v.setting)
        }

    def root(self) -> DataRoot:
        return DataRoot.resolve(self.home)

    def rules_file(self, root: DataRoot) -> Path:
        """The category rules file runs are labelled with (the package's rules back it up)."""
        return Path(self.categories_file).expanduser() if self.categories_file else root.user_categories
