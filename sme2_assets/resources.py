"""The one resource every asset uses: where the data root is and how to profile."""

from __future__ import annotations

from typing import Optional

import dagster as dg

from kit.core.home import DataRoot
from kit.pipeline import Settings


class Sme2(dg.ConfigurableResource):
    """Data root ($SME2_HOME, default ./.sme2) and profiling settings."""

    home: str = ""
    models_dir: str = ""
    size: str = ""  # empty: full on hardware targets, small on emulated ones
    iterations: int = 20
    warmup: int = 3
    threads: Optional[list[int]] = None
    runner: str = "native"
    cv_bound_percent: float = 15.0
    regression_block_ratio: float = 1.5  # a confirmed end-to-end slowdown beyond this blocks

    def root(self) -> DataRoot:
        return DataRoot.resolve(self.home or None)

    def settings(self) -> Settings:
        return Settings(
            models_dir=self.models_dir or None,
            size=self.size or None,
            iterations=self.iterations,
            warmup=self.warmup,
            threads=self.threads,
            runner=self.runner,
            cv_bound_percent=self.cv_bound_percent,
        )
