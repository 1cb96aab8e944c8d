"""Experiment configs: one declarative file saying what to profile and how, validated before anything
runs. Two syntaxes of one schema:

- ours, TOML (`configs/*.toml`): a model package (`model = "tiny_seg"`, `dtypes`, `size`) or a
  program (`pte = "path.pte"`), and experiments naming a target (`target = "host.sme2-off"`) and a
  runner recipe (`runner = "native"`) or a binary (`runner_path`);
- Arm's kit's JSON (`model_profiling/configs/*.json`, accepted as it is): `model` is a .pte path,
  experiments name a `runner_path` and no target: the device is `device` (default `host`, or
  `--device`) and the SME2 flag comes from the experiment's name (`mac_sme2_on`, `..._sme2_off`).

Keys (defaults in brackets; docs/configs.md has the full list): name [file stem], model | pte,
etrecord, dtypes [fp32], size [the device's], backend [xnnpack], models_dir, output_root
[<data root>/experiments/<name>/], device [host], timeout_s [900], experiments[] {name, target,
device, runner [native], runner_path (alias quiet_runner), mode [timing] timing | xnntrace,
runs [100], warmup [10], threads [[1]], extra_args [[]], cpu_affinity}, analysis.compare_pairs[]
{baseline: {experiment, threads}, candidate: {experiment, threads}, label}.

Relative input paths (model/pte, etrecord, runner_path, models_dir) are looked up next to the config
file first, then in the current directory (Arm's convention; for runner paths also under
`executorch/`, as Arm's runner does); `output_root` is relative to the current directory and may
say `<model>`. Every problem is a ConfigError naming the file and the key:
"configs/mac.json: experiments[1].runs must be >= 1"."""

from __future__ import annotations

import hashlib
import json
import re
from kit.core.compat import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kit.core import limits, names
from kit.core.errors import NameError_, Sme2Error
from kit.core.names import Target
from kit.core.settings import Iterations, Warmups, checked

FORMATS = {".toml": "toml", ".json": "json"}
MODES = ("timing", "xnntrace")
RECIPE_RUNNERS = ("native", "pybind")
# `sme2_on`, `sme2-off`, `SME2on` in an experiment name: Arm's kit names its experiments this way.
_FLAG_IN_NAME = re.compile(r"sme2[_-]?(on|off)(?![a-z])", re.IGNORECASE)
_CPU_LIST = re.compile(r"\d+(-\d+)?(,\d+(-\d+)?)*")
_PLACEHOLDER = re.compile(r"REPLACE_WITH|<[a-z_]+>")
MAX_EXTRA_ARGS = 256


class ConfigError(Sme2Error):
    """An experiment config that cannot be read or fails validation."""


class _Side(BaseModel):
    model_config = ConfigDict(extra="forbid")
    experiment: str
    threads: int = Field(1, ge=1, le=limits.MAX_THREADS)


class ComparePair(BaseModel):
    model_config = ConfigDict(extra="forbid")
    baseline: _Side
    candidate: _Side
    label: str = ""


class Analysis(BaseModel):
    model_config = ConfigDict(extra="forbid")
    compare_pairs: list[ComparePair] = Field(default_factory=list)


class Experiment(BaseModel):
    """One experiment: a runner on a target, for each thread count."""

    model_config = ConfigDict(extra="forbid")

    name: str
    target: str | None = None
    device: str | None = None
    runner: Literal["native", "pybind", "path"] | None = None
    runner_path: str | None = None
    quiet_runner: str | None = None  # Arm's older name for runner_path
    mode: Literal["timing", "xnntrace"] = "timing"
    runs: Iterations = 100
    warmup: Warmups = 10
    threads: list[int] = Field(default_factory=lambda: [1], min_length=1)
    extra_args: list[str] = Field(default_factory=list, max_length=MAX_EXTRA_ARGS)
    cpu_affinity: str | int | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v):
        return checked(lambda x: names.file_component("experiment name", x), v)

    @field_validator("target")
    @classmethod
    def _target(cls, v):
        return None if v is None else checked(Target.parse, v).key

    @field_validator("device")
    @classmethod
    def _device(cls, v):
        return None if v is None else checked(names.device_name, v)

    @field_validator("threads")
    @classmethod
    def _threads(cls, v):
        problem = limits.thread_list_problem(v)
        if problem:
            raise ValueError(problem)
        return v

    @field_validator("extra_args")
    @classmethod
    def _extra_args(cls, v):
        for arg in v:
            if "\0" in arg or len(arg) > 4096:
                raise ValueError("entries must be plain strings (no NUL, at most 4096 characters)")
        return v

    @field_validator("cpu_affinity")
    @classmethod
    def _affinity(cls, v):
        return None if v is None else cpu_list(v)

    @model_validator(mode="after")
    def _runner(self):
        if self.runner_path and self.quiet_runner and self.runner_path != self.quiet_runner:
            raise ValueError("give runner_path or quiet_runner (its older name), not both")
        path = self.runner_path or self.quiet_runner
        if path and self.runner in RECIPE_RUNNERS:
            raise ValueError(f"runner = {self.runner!r} is a recipe runner: drop it to use runner_path {path!r}")
        if self.runner == "path" and not path:
            raise ValueError('runner = "path" needs runner_path (the binary to run)')
        if self.extra_args and not path:
            raise ValueError("extra_args are passed to an executor_runner-compatible binary: set runner_path too")
        return self

    @property
    def binary(self) -> str | None:
        return self.runner_path or self.quiet_runner

    @property
    def runner_kind(self) -> str:
        return "path" if self.binary else (self.runner or "native")


class ConfigModel(BaseModel):
    """The whole file, as written."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    model: str | None = None
    pte: str | None = None
    etrecord: str | None = None
    dtypes: list[str] | str | None = None
    size: str | None = None
    backend: Literal["xnnpack", "portable"] = "xnnpack"
    models_dir: str | None = None
    output_root: str | None = None
    device: str = "host"
    timeout_s: float = Field(limits.RUN_TIMEOUT_S, gt=0, le=7 * 24 * 3600)
    experiments: list[Experiment] = Field(min_length=1)
    analysis: Analysis = Field(default_factory=Analysis)

    @field_validator("name")
    @classmethod
    def _name(cls, v):
        return None if v is None else checked(lambda x: names.file_component("config name", x), v)

    @field_validator("device")
    @classmethod
    def _device(cls, v):
        return checked(names.device_name, v)

    @field_validator("size")
    @classmethod
    def _size(cls, v):
        return None if v is None else checked(names.size_name, v)

    @field_validator("dtypes")
    @classmethod
    def _dtypes(cls, v):
        if v is None or v == "all":
            return v
        items = [d.strip() for d in v.split(",")] if isinstance(v, str) else v
        if not items:
            raise ValueError('must name at least one dtype, or be "all"')
        for d in items:
            checked(names.dtype, d)
        if len(set(items)) != len(items):
            raise ValueError(f"must not repeat a dtype, got {items}")
        return items

    @model_validator(mode="after")
    def _whole(self):
        if bool(self.model) == bool(self.pte):
            raise ValueError("give model (a model package name, or Arm's kit's path to a .pte) or pte, one of them")
        seen = set()
        for e in self.experiments:
            if e.name in seen:
                raise ValueError(f"experiment names must be unique: {e.name!r} appears twice")
            seen.add(e.name)
        by_name = {e.name: e for e in self.experiments}
        for i, pair in enumerate(self.analysis.compare_pairs):
            for side in ("baseline", "candidate"):
                s = getattr(pair, side)
                exp = by_name.get(s.experiment)
                where = f"analysis.compare_pairs[{i}].{side}"
                if exp is None:
                    raise ValueError(
                        f"{where}: no experiment named {s.experiment!r} (experiments: {', '.join(by_name)})"
                    )
                if s.threads not in exp.threads:
                    raise ValueError(
                        f"{where}: experiment {s.experiment!r} runs threads {exp.threads}, not {s.threads}"
                    )
                if exp.mode != "timing":
                    raise ValueError(f"{where}: experiment {s.experiment!r} is an xnntrace run: it has no timings")
        return self


def cpu_list(value) -> str:
    """A taskset CPU list from Arm's hex mask ("0x80" -> "7", "0xF0" -> "4,5,6,7"), a CPU list
    ("4-7", "0,2") or a CPU number."""
    if isinstance(value, bool):
        raise ValueError('must be a CPU mask such as "0x80", a CPU list such as "4-7", or a CPU number')
    if isinstance(value, int):
        if not 0 <= value < 4096:
            raise ValueError(f"CPU number {value} is out of range")
        return str(value)
    text = value.strip()
    if re.fullmatch(r"0[xX][0-9a-fA-F]{1,256}", text):
        mask = int(text, 16)
        cpus = [str(i) for i in range(mask.bit_length()) if mask >> i & 1]
        if not cpus:
            raise ValueError(f"mask {text} selects no CPU")
        return ",".join(cpus)
    if _CPU_LIST.fullmatch(text) and len(text) <= 1024:
        return text
    raise ValueError(f'{value!r} is not a CPU mask ("0x80"), a CPU list ("4-7", "0,2") or a CPU number')


def flag_from_name(name: str) -> bool | None:
    """SME2 on/off as an Arm-kit experiment name says it (`mac_sme2_on`), or None."""
    m = _FLAG_IN_NAME.search(name)
    return None if m is None else m.group(1).lower() == "on"


# ---------------------------------------------------------------- the loaded, resolved config


@dataclass
class PlannedExperiment:
    """An experiment with its paths resolved; its target is settled when it runs (the SME2 flag of
    a binary depends on the device: kit.profile.experiments)."""

    index: int
    name: str
    target: Target | None
    device: str
    flag_from_name: bool | None
    runner: str  # native | pybind | path
    runner_path: Path | None
    kernel_log_runner: Path | None  # Arm's `--verbose-runner` (xnntrace mode)
    mode: str
    runs: int
    warmup: int
    threads: list[int]
    extra_args: tuple[str, ...]
    cpus: str | None

    @property
    def key(self) -> str:
        return f"experiments[{self.index}]"


@dataclass
class Config:
    source: Path  # the file
    format: str  # toml | json
    name: str
    sha256: str
    model: str | None  # a model package
    pte: Path | None  # or a program
    etrecord: Path | None
    dtypes: list[str] | None  # None: fp32 for a package, the file name's for a program
    size: str | None
    backend: str
    models_dir: str | None
    output_root: Path | None  # None: <data root>/experiments/<name>/
    device: str
    timeout_s: float
    experiments: list[PlannedExperiment]
    compare_pairs: list[ComparePair] = field(default_factory=list)
    raw: dict = field(default_factory=dict)

    def output_dir(self, data_root) -> Path:
        return self.output_root or (data_root.experiments / self.name)

    @property
    def devices(self) -> list[str]:
        """The devices its experiments run on, in order of first use."""
        return list(dict.fromkeys(e.device for e in self.experiments))


def load(path, device: str | None = None, cwd: Path | None = None) -> Config:
    """Read, validate and resolve a config file. `device` overrides the config's default device
    (Arm configs name none). Raises ConfigError naming the file and the key."""
    path = Path(path).expanduser()
    label = str(path)
    cwd = Path(cwd or Path.cwd())
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(
            f"{label}: an experiment config is a .toml (ours) or .json (Arm's kit) file",
            "rename it, or see docs/configs.md for the format",
        )
    if not path.is_file():
        raise ConfigError(f"{label}: no such config file", "pass the path of a .toml or .json experiment config")
    data = path.read_bytes()
    try:
        raw = tomllib.loads(data.decode()) if fmt == "toml" else json.loads(data)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ConfigError(f"{label} is not valid {fmt.upper()}: {e}", "fix the syntax; see docs/configs.md") from None
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{label}: the file must hold one {fmt.upper()} object (keys and values)", "see docs/configs.md"
        )
    try:
        model = ConfigModel.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"{label}: {_problem(e)}", _hint(e)) from None
    if device is not None:
        _check_or_raise(label, "--device", device, names.device_name)
    default_device = device or model.device
    bases = [path.resolve().parent, cwd.resolve()]

    def placeholder(key: str, value: str) -> None:
        if _PLACEHOLDER.search(value):
            raise ConfigError(
                f"{label}: {key} = {value!r} is a template placeholder",
                f"put the real path in {key}"
                + (": sme2 export --outdir DIR writes a .pte" if key in ("model", "pte") else ""),
            )

    def input_path(key: str, value: str, executorch_prefix: bool = False) -> Path:
        placeholder(key, value)
        p = Path(value).expanduser()
        if p.is_absolute():
            candidates = [p]
        else:
            candidates = [b / p for b in bases] + ([cwd / "executorch" / p] if executorch_prefix else [])
            candidates = list(dict.fromkeys(candidates))  # the config's folder may be the current one
        for c in candidates:
            if c.exists():
                if not c.is_file():
                    raise ConfigError(
                        f"{label}: {key} = {value!r} is a folder ({c}), not a file", f"point {key} at a file"
                    )
                return c.resolve()
        raise ConfigError(
            f"{label}: {key} = {value!r} does not exist (looked for {', '.join(str(c) for c in candidates)})",
            "relative paths are taken from the config's folder, then the current directory",
        )

    pkg, pte = None, None
    program = model.pte or model.model
    placeholder("pte" if model.pte else "model", program)
    if model.pte or program.endswith(".pte") or "/" in program or "\\" in program:
        pte = input_path("pte" if model.pte else "model", program)
    else:
        pkg = _check_or_raise(label, "model", program, names.model_name)
    if pte is not None and isinstance(model.dtypes, list) and len(model.dtypes) > 1:
        raise ConfigError(f"{label}: dtypes: a program has one dtype, not {model.dtypes}", "give one dtype, or none")
    if pte is not None and model.dtypes == "all":
        raise ConfigError(f'{label}: dtypes = "all" needs a model package, not a program', "give one dtype, or none")
    if model.etrecord and pte is None:
        raise ConfigError(f"{label}: etrecord goes with a program (pte), not a model package", "remove etrecord")
    etrecord = input_path("etrecord", model.etrecord) if model.etrecord else None
    models_dir = None
    if model.models_dir:
        p = Path(model.models_dir).expanduser()
        found = next((b / p for b in ([Path("/")] if p.is_absolute() else bases) if (b / p).is_dir()), None)
        if found is None:
            raise ConfigError(
                f"{label}: models_dir = {model.models_dir!r} is not a folder", "point it at your model packages"
            )
        models_dir = str(found.resolve())
    stem_model = pte.stem if pte is not None else pkg
    name = model.name or _config_name(label, path.stem)
    output_root = None
    if model.output_root:
        out = model.output_root.replace("<model>", _model_for_paths(stem_model))
        if "\0" in out:
            raise ConfigError(f"{label}: output_root holds a NUL character", "use a plain folder path")
        output_root = (cwd / Path(out).expanduser()).resolve()
        if output_root.exists() and not output_root.is_dir():
            raise ConfigError(f"{label}: output_root {output_root} is a file", "point output_root at a folder")
    planned = []
    for i, e in enumerate(model.experiments):
        key = f"experiments[{i}]"
        extra = list(e.extra_args)
        kernel_log_runner = None
        if "--verbose-runner" in extra:  # Arm's perf_runner option: the kernel-log binary for xnntrace
            at = extra.index("--verbose-runner")
            if at + 1 >= len(extra):
                raise ConfigError(f"{label}: {key}.extra_args: --verbose-runner needs a path", "--verbose-runner PATH")
            kernel_log_runner = input_path(f"{key}.extra_args --verbose-runner", extra[at + 1], executorch_prefix=True)
            del extra[at : at + 2]
        planned.append(
            PlannedExperiment(
                index=i,
                name=e.name,
                target=Target.parse(e.target) if e.target else None,
                device=Target.parse(e.target).device if e.target else (e.device or default_device),
                flag_from_name=flag_from_name(e.name),
                runner=e.runner_kind,
                runner_path=input_path(f"{key}.runner_path", e.binary, executorch_prefix=True) if e.binary else None,
                kernel_log_runner=kernel_log_runner,
                mode=e.mode,
                runs=e.runs,
                warmup=e.warmup,
                threads=list(e.threads),
                extra_args=tuple(extra),
                cpus=e.cpu_affinity,
            )
        )
    return Config(
        source=path.resolve(),
        format=fmt,
        name=name,
        sha256=hashlib.sha256(data).hexdigest(),
        model=pkg,
        pte=pte,
        etrecord=etrecord,
        dtypes=None if model.dtypes is None else (model.dtypes if model.dtypes == "all" else list(model.dtypes)),
        size=model.size,
        backend=model.backend,
        models_dir=models_dir,
        output_root=output_root,
        device=default_device,
        timeout_s=model.timeout_s,
        experiments=planned,
        compare_pairs=list(model.analysis.compare_pairs),
        raw=raw,
    )


def _model_for_paths(stem: str) -> str:
    """`<model>` in Arm's output_root: the model's name (a program's stem without `_xnnpack_<dtype>`)."""
    return re.sub(r"_(xnnpack|portable)_[a-z0-9_]+$", "", stem) or stem


def _config_name(label: str, stem: str) -> str:
    try:
        return names.file_component("config name", stem)
    except NameError_ as e:
        raise ConfigError(
            f"{label}: the file name {stem!r} cannot name the config ({e.message})", 'set name = "..." in the file'
        ) from None


def _check_or_raise(label: str, key: str, value, check):
    try:
        return check(value)
    except NameError_ as e:
        raise ConfigError(f"{label}: {key} = {value!r}: {e.message}", e.hint) from None


# ---------------------------------------------------------------- readable validation errors

_MESSAGES = {
    "greater_than_equal": "must be >= {ge}",
    "greater_than": "must be > {gt}",
    "less_than_equal": "must be <= {le}",
    "missing": "is required",
    "extra_forbidden": "is not a known key",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "bool_type": "must be true or false",
    "too_short": "must have at least {min_length} entries",
    "too_long": "must have at most {max_length} entries",
    "literal_error": "must be one of {expected}",
    "model_type": "must be a table of keys",
    "dict_type": "must be a table of keys",
}


def _where(loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("str", "int", "list[str]", "list[int]", "function-after[_affinity(), union[str,int]]"):
            continue  # pydantic's union member labels
        elif str(part).startswith(("function-", "union[", "nullable[", "literal[")):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out


def _problem(e: ValidationError) -> str:
    errors = e.errors()
    # A union (str | int, list | str) reports one error per member: keep the first per place.
    first: dict[str, dict] = {}
    for err in errors:
        first.setdefault(_where(err["loc"]), err)
    parts = []
    for where, err in first.items():
        template = _MESSAGES.get(err["type"])
        ctx = err.get("ctx") or {}
        if template:
            try:
                message = template.format(**ctx)
            except (KeyError, IndexError):
                message = template
        else:
            message = str(err["msg"]).removeprefix("Value error, ")
        if where:
            parts.append(f"{where} {message}")
        else:
            parts.append(message)
    return "; ".join(parts)


def _hint(e: ValidationError) -> str:
    if any(err["type"] == "extra_forbidden" for err in e.errors()):
        top = ", ".join(ConfigModel.model_fields)
        exp = ", ".join(Experiment.model_fields)
        return f"known keys: {top}; in experiments: {exp} (docs/configs.md)"
    return "see docs/configs.md for every key and its default"


@dataclass
class Found:
    """A config file in a watched folder: its name (the file stem), and the loaded config or why not."""

    name: str
    path: Path
    sha256: str
    config: Config | None = None
    error: str = ""


def discover(folder: Path) -> list[Found]:
    """Every *.toml and *.json config in `folder` (not recursive), loaded; a broken one carries its
    error and never hides the others. Two files with one name (x.toml and x.json, or the same
    `name =`) are both refused: the name is the Dagster partition and the output folder."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    files = sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FORMATS and not p.name.startswith(".")
    )
    out = []
    for p in files:
        found = Found(p.stem, p, hashlib.sha256(p.read_bytes()).hexdigest())
        try:
            found.config = load(p, cwd=folder)
            found.name = found.config.name
        except Sme2Error as e:
            found.error = str(e)
        out.append(found)
    counts: dict[str, int] = {}
    for f in out:
        counts[f.name] = counts.get(f.name, 0) + 1
    for f in out:
        if counts[f.name] > 1:  # the name is the partition key and the output folder: it must be unique
            f.config, f.error = None, f"{f.path}: another config in {folder} is also named {f.name!r}: rename one"
    return out


def find(folder: Path, name: str) -> Config:
    """The config named `name` in `folder` (the Dagster partition of a dropped config)."""
    names.file_component("config name", name)
    for found in discover(folder):
        if found.name == name:
            if found.config is None:
                raise ConfigError(found.error)
            return found.config
    raise ConfigError(f"no experiment config named {name!r} in {folder}", "drop the .toml or .json file there again")
