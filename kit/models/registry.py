"""Model package discovery: every folder under models/ is a package; no install, no edits elsewhere.

A package is either native (`model.py` defines `MODEL = ModelSpec(...)`) or written for Arm's kit
(`__init__.py` calls `register_model("name", Class)`, optionally with Arm's keyword options
`xnnpack_quantization=` and `xnnpack_delegation=`; `model.py` imports `..model_base`). The
folder is loaded as a synthetic parent package that provides `register_model` and `model_base`, so
both kinds of import resolve. One broken package is reported and never hides the others."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import sys
import traceback
import types
from dataclasses import dataclass
from pathlib import Path

from kit.core import environment, names
from kit.core.errors import ModelPackageError, Sme2Error
from kit.models import examples, exitguard, modelspec
from kit.models.modelspec import ModelSpec

DEFAULT_MODELS_DIR = Path(__file__).resolve().parents[2] / "models"  # the bundled packages beside kit/
DEFAULT_MODEL = "tiny_seg"


@dataclass
class ModelPackage:
    name: str  # folder name
    path: Path
    content_hash: str
    spec: ModelSpec | None = None
    kind: str = "native"  # or "arm-kit"
    error: str = ""

    @property
    def ok(self) -> bool:
        # A package with any problem is unusable, even if it produced a spec before the problem
        # was found (e.g. a spec that claims another package's name).
        return self.spec is not None and not self.error

    @property
    def source_id(self) -> str:
        """ "" for a package of the models folder ($SME2_MODELS, else the bundled one); for a package
        of any other folder, 8 hex digits of its folder's path. Exports and run keys carry it, so a
        package of the same name from another folder never takes over the other's exports or history."""
        if self.path.resolve().parent == models_dir():
            return ""
        return hashlib.sha256(str(self.path.resolve()).encode()).hexdigest()[:8]


def content_hash(folder: Path) -> str:
    """sha256 over the package's files (names and bytes), ignoring caches: an unchanged package
    always hashes the same."""
    h = hashlib.sha256()
    for f in sorted(
        p
        for p in Path(folder).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and not p.name.endswith(".pyc")
    ):
        h.update(str(f.relative_to(folder)).encode() + b"\0")
        h.update(f.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def models_dir(path: str | Path | None = None) -> Path:

    return Path(path or environment.get("SME2_MODELS") or DEFAULT_MODELS_DIR).resolve()


def _parent_package(folder: Path) -> tuple[str, dict]:
    """A fresh synthetic package over `folder` providing register_model and model_base."""
    pkg_name = "sme2_models_" + hashlib.sha1(str(folder).encode()).hexdigest()[:10]
    for mod in [m for m in sys.modules if m == pkg_name or m.startswith(pkg_name + ".")]:
        del sys.modules[mod]
    registered: dict[str, tuple[type, dict]] = {}
    parent = types.ModuleType(pkg_name)
    parent.__path__ = [str(folder)]

    def register_model(
        name: str,
        cls: type | None = None,
        *,
        xnnpack_quantization=None,
        xnnpack_delegation: bool = True,
    ):
        """Arm's kit's `register_model(name, cls, *, xnnpack_quantization=None,
        xnnpack_delegation=True)`, also usable as a decorator. The options are checked when the
        package is loaded (modelspec.from_arm_kit) and honoured by the exporter."""
        options = {"xnnpack_quantization": xnnpack_quantization, "xnnpack_delegation": xnnpack_delegation}
        if cls is None:

            def deco(c):
                registered[name] = (c, options)
                return c

            return deco
        registered[name] = (cls, options)
        return cls

    parent.register_model = register_model
    base = types.ModuleType(pkg_name + ".model_base")
    base.EagerModelBase = modelspec.EagerModelBase
    parent.model_base = base
    sys.modules[pkg_name] = parent
    sys.modules[pkg_name + ".model_base"] = base
    return pkg_name, registered


def discover(path: str | Path | None = None) -> list[ModelPackage]:
    """Import every package folder; return all of them, broken ones with their error."""
    folder = models_dir(path)
    if not folder.is_dir():
        raise ModelPackageError(
            f"models folder {folder} does not exist", "create it or set SME2_MODELS to your models folder"
        )
    pkg_name, registered = _parent_package(folder)
    if str(folder.parent) not in sys.path:
        pass  # packages import each other only through the synthetic parent
    out = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        if not ((sub / "__init__.py").exists() or (sub / "model.py").exists()):
            continue
        pkg = ModelPackage(name=sub.name, path=sub, content_hash=content_hash(sub))
        out.append(pkg)
        try:
            names.model_name(sub.name)
            before = dict(registered)
            # Model code runs here: what it prints goes to stderr (stdout may be `sme2 models --json`),
            # and an import that hangs is stopped.
            with (
                exitguard.model_code(sub.name, "importing its package", str(sub)),
                exitguard.deadline(sub.name, "importing its package", str(sub)),
                contextlib.redirect_stdout(sys.stderr),
            ):
                module = _import_package(pkg_name, sub)
            spec = getattr(module, "MODEL", None)
            new = {k: v for k, v in registered.items() if before.get(k) is not v}
            if isinstance(spec, ModelSpec):
                pkg.spec = spec
            elif new:
                (reg_name, (cls, options)), *rest = new.items()
                if rest:
                    raise ModelPackageError(
                        f"package {sub.name} registers {len(new)} models", "register one model per package folder"
                    )
                pkg.spec, pkg.kind = modelspec.from_arm_kit(reg_name, cls, **options), "arm-kit"
            else:
                raise ModelPackageError(
                    f"package {sub.name} declares no model",
                    "define MODEL = ModelSpec(...) in model.py, or call register_model('name', Class) in __init__.py",
                )
            if pkg.spec.name != sub.name:
                # Every key a package's exports and runs are filed under derives from its folder
                # name; a spec naming another model would overwrite that model's results.
                other = folder / pkg.spec.name
                raise ModelPackageError(
                    f"{folder.name}/{sub.name} declares name {pkg.spec.name!r}; a package's name must be its "
                    "folder name: rename the folder or the name",
                    f"{folder.name}/{pkg.spec.name} is another package; two packages cannot share a name"
                    if other.is_dir()
                    else f"set name={sub.name!r} in {sub / 'model.py'}, or rename the folder to {pkg.spec.name}",
                )
        except Sme2Error as e:
            pkg.error = str(e)
        except BaseException as e:  # a package's own bug: report it, keep going
            if isinstance(e, KeyboardInterrupt):
                raise
            tb = traceback.extract_tb(e.__traceback__)
            where = next((f"{Path(f.filename).name}:{f.lineno}" for f in reversed(tb) if str(sub) in f.filename), "")
            if isinstance(e, SyntaxError):
                where = f"{Path(e.filename or '').name}:{e.lineno}"
            pkg.error = f"{type(e).__name__}: {e}" + (f" (at {where})" if where else "")
        if pkg.error:
            pkg.spec = None  # nothing may use a spec the package failed to validate
    return out


def _import_package(pkg_name: str, sub: Path):
    name = f"{pkg_name}.{sub.name}"
    init = sub / "__init__.py"
    if init.exists():
        spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(sub)])
    else:
        spec = importlib.util.spec_from_loader(name, loader=None, is_package=True)
        spec.submodule_search_locations = [str(sub)]
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    if init.exists():
        spec.loader.exec_module(module)
    if not hasattr(module, "MODEL") and (sub / "model.py").exists():
        model_mod = importlib.import_module(f"{name}.model")
        if hasattr(model_mod, "MODEL"):
            module.MODEL = model_mod.MODEL
    return module


def get(name: str, path: str | Path | None = None) -> ModelPackage:
    """One package by name; a clear error if it is missing or broken."""
    names.model_name(name)
    pkgs = discover(path)
    for p in pkgs:
        if p.name == name:
            if not p.ok:
                raise ModelPackageError(
                    f"model package {name!r} is broken: {p.error}",
                    f"fix {p.path}; `sme2 models` lists every package and its problem",
                )
            return p
    example = examples.spec_for(name)  # ExecuTorch's own example models, by name, as Arm's exporter has them
    if example is not None:
        spec, source, digest = example
        return ModelPackage(name=name, path=source, content_hash=digest, spec=spec, kind="executorch-example")
    raise ModelPackageError(
        f"no model package {name!r} in {models_dir(path)}, and executorch has no example model of that name",
        f"available: {', '.join(p.name for p in pkgs) or 'none'}; executorch's examples: "
        f"{', '.join(sorted(examples.catalog())[:12])}, ...",
    )


def dtypes_of(name: str, spec_text: str, path: str | Path | None = None) -> list[str]:
    """The dtypes a user asked for: a comma-separated list, each checked against the package,
    or `all` for every dtype the package supports."""
    spec = get(name, path).spec
    wanted = [d.strip() for d in spec_text.split(",") if d.strip()]
    if wanted == ["all"]:
        return list(spec.supported_dtypes)
    for d in wanted:
        spec.check_dtype(d)
    return wanted
