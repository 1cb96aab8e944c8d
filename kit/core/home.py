"""The data root: everything the platform writes lives under one folder ($SME2_HOME, default .sme2/)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from kit.core import environment
from kit.core.errors import DataRootError
from kit.core.names import file_component


@dataclass(frozen=True)
class DataRoot:
    path: Path

    @classmethod
    def resolve(cls, path: str | os.PathLike | None = None) -> "DataRoot":
        """Resolve once, to an absolute path: explicit argument, else $SME2_HOME, else ./.sme2."""
        chosen = path or environment.get("SME2_HOME") or ".sme2"
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

    def within(self, path: Path, what: str = "an output") -> Path:
        """`path` if it resolves inside the data root (links followed), else a DataRootError: the
        last check before anything is written from names read back from the warehouse or a store."""
        resolved = Path(path).resolve()
        if resolved != self.path and self.path not in resolved.parents:
            raise DataRootError(
                f"{what} would be written at {path}, outside the data root {self.path}",
                "a name read from the warehouse or the shared store is not a valid file name: check the run "
                "(`sme2 warehouse verify`) and re-ingest it from its run folder",
            )
        return Path(path)

    def report_path(self, *parts: str) -> Path:
        """reports/<parts...>: each part one file-name component (a variant, a run id, a file),
        the whole inside the data root."""
        for part in parts:
            file_component("report path component", part)
        return self.within(self.reports.joinpath(*parts), "a report")

    def run_path(self, run_id: str) -> Path:
        """runs/<run_id>/, the run id checked to be one file-name component."""
        return self.within(self.runs / file_component("run id", run_id), f"run folder {run_id!r}")

    @property
    def tools(self) -> Path:
        """QEMU, the aarch64 executorch package, probes. $SME2_TOOLS shares one copy between data
        roots (the test suite reuses the one `sme2 setup` made)."""
        shared = environment.get("SME2_TOOLS")
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
