"""The one resource every asset, sensor and schedule uses: where the data root is and how to profile.

Its fields mirror `kit.core.settings.Settings` one by one (Dagster 1.13 nests only `dg.Config`
classes in resource config, not plain pydantic models), so every setting is run config:

    resources: {sme2: {config: {iterations: 50, threads: [1, 2], timeout_s: 600,
                                targets: [host.sme2-off], categories_file: /path/rules.toml}}}

Fields that are also SME2_* environment variables (kit.core.environment) override them for the
steps of a run: `Sme2(shared_store=dg.EnvVar("SME2_SHARED_STORE"))` in a deployment's definitions,
or `{shared_store: /mnt/lab/warehouse}` in run config.

`settings()` builds and validates the kit object; a bad value fails the run with the field and
its rule before anything is measured."""

from __future__ import annotations

import os
from typing import Optional

import dagster as dg
from pydantic import Field, PrivateAttr

from kit.core.home import DataRoot
from kit.core.settings import Settings

_D = {name: f.default for name, f in Settings.model_fields.items() if name != "targets"}


def _doc(name: str) -> str:
    return Settings.model_fields[name].description or ""


class Sme2(dg.ConfigurableResource):
    """Data root and profiling settings (kit.core.settings.Settings, field by field)."""

    home: Optional[str] = Field(_D["home"], description=_doc("home"))
    models_dir: Optional[str] = Field(_D["models_dir"], description=_doc("models_dir"))
    size: Optional[str] = Field(_D["size"], description=_doc("size"))
    iterations: int = Field(_D["iterations"], description=_doc("iterations"))
    warmup: int = Field(_D["warmup"], description=_doc("warmup"))
    threads: Optional[list[int]] = Field(_D["threads"], description=_doc("threads"))
    runner: str = Field(_D["runner"], description=_doc("runner"))
    timeout_s: float = Field(_D["timeout_s"], description=_doc("timeout_s"))
    targets: list[str] = Field(default_factory=list, description=_doc("targets"))
    cv_bound_percent: float = Field(_D["cv_bound_percent"], description=_doc("cv_bound_percent"))
    regression_block_ratio: float = Field(_D["regression_block_ratio"], description=_doc("regression_block_ratio"))
    categories_file: Optional[str] = Field(_D["categories_file"], description=_doc("categories_file"))
    tools: Optional[str] = Field(_D["tools"], description=_doc("tools"))
    export_cache: Optional[str] = Field(_D["export_cache"], description=_doc("export_cache"))
    shared_store: Optional[str] = Field(_D["shared_store"], description=_doc("shared_store"))
    shared_catalog: Optional[str] = Field(_D["shared_catalog"], description=_doc("shared_catalog"))

    _replaced: dict = PrivateAttr(default_factory=dict)  # variable -> its value before the step (None: unset)

    def setup_for_execution(self, context) -> None:
        """Fields that are environment variables the kit reads where it needs them (the tools folder,
        the export cache, the lab's lake) are set in this process while the step runs, and put back
        after it (teardown_after_execution): an in-process run (`dg.materialize`, `sme2 pipeline`)
        leaves the caller's environment as it found it. Not a context manager: sensors take the
        resource without one."""
        overrides = self.settings().overrides()
        self._replaced = {name: os.environ.get(name) for name in overrides}
        os.environ.update(overrides)

    def teardown_after_execution(self, context) -> None:
        for name, value in self._replaced.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._replaced = {}

    def settings(self) -> Settings:
        """The validated kit settings (raises kit.core.settings.SettingsError on a bad value)."""
        return Settings.of(**{name: getattr(self, name) for name in Settings.model_fields})

    def root(self) -> DataRoot:
        return self.settings().root()
