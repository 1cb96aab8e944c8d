"""The data root: everything the platform writes lives under one folder ($SME2_HOME, default .sme2/)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DataRoot:
    path: Path

    @classmethod
    def resolve(cls, path: str | os.PathLike | None = None) -> "DataRoot":
        """Resolve once, to an absolute path: explicit argument, else $SME2_HOME, else ./.sme2."""
        chosen = path or os.environ.get("SME2_HOME") or ".sme2"
        root = Path(chosen).expanduser().resolve()
        root.mkdir(parents=True, exist_ok=True)
        return cls(root)

    def sub(self, name: str) -> Path:
        p = self.path / name
        p.mkdir(parents=True, exist_ok=True)
        return p

    @property
    def exports(self) -> Path:
        return self.sub("exports")

    @property
    def runners(self) -> Path:
        return self.sub("runners")

    @property
    def runs(self) -> Path:
        return self.sub("runs")

    @property
    def refused(self) -> Path:
        """Run folders refused after measuring (e.g. SME2 kernels under an sme2-off label), kept for
        inspection with the reason in refused.json. Outside runs/: recovery never ingests them."""
        return self.sub("refused")

    @property
    def reports(self) -> Path:
        return self.sub("reports")

    @property
    def tools(self) -> Path:
        """QEMU, the aarch64 executorch package, probes. $SME2_TOOLS shares one copy between data
        roots (the test suite reuses the one `sme2 setup` made)."""
        import os

        shared = os.environ.get("SME2_TOOLS")
        if shared:
            p = Path(shared).expanduser().resolve()
            p.mkdir(parents=True, exist_ok=True)
            return p
        return self.sub("tools")

    @property
    def locks(self) -> Path:
        return self.sub("locks")

    @property
    def logs(self) -> Path:
        """Logs of failed builds and runs, kept here because the staging folders that held them
        are removed on failure."""
        return self.sub("logs")

    @property
    def configs(self) -> Path:
        """Experiment configs dropped here are run by the Dagster sensor `experiment_configs`."""
        return self.sub("configs")

    @property
    def experiments(self) -> Path:
        """Default output folders of experiment configs (experiments/<config name>/)."""
        return self.sub("experiments")

    @property
    def dagster_home(self) -> Path:
        return self.sub("dagster_home")

    @property
    def warehouse(self) -> Path:
        return self.path / "warehouse.duckdb"

    @property
    def user_devices(self) -> Path:
        return self.path / "devices.toml"

    @property
    def user_categories(self) -> Path:
        return self.path / "categories.toml"

    @property
    def user_cost_model(self) -> Path:
        """Estimated cycles of counting runs use this cost model when it exists (kit.counts.costmodel)."""
        return self.path / "costmodel.toml"
