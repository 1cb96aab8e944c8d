"""Session-wide real artifacts: one data root, the default model exported in every dtype, the
native runner built once, and one profiled run. Everything downstream reuses them."""

from __future__ import annotations

import os
import warnings

import pytest

from kit import pipeline
from kit.core.home import DataRoot
from kit.devices import inventory, toolsetup
from kit.export import exporter
from kit.models import registry
from kit.profile import session
from kit.runners.build import build_runner

warnings.filterwarnings("ignore")
DTYPES = ("fp32", "fp16", "int8", "int8-dynamic")


@pytest.fixture(scope="session")
def home(tmp_path_factory) -> DataRoot:
    root = DataRoot.resolve(tmp_path_factory.mktemp("sme2home"))
    os.environ["SME2_HOME"] = str(root.path)
    return root


@pytest.fixture(scope="session")
def tiny():
    return registry.get("tiny_seg")


@pytest.fixture(scope="session")
def exports(home, tiny) -> dict[str, exporter.Export]:
    return {d: exporter.export_variant(tiny, d, "small", home) for d in DTYPES}


@pytest.fixture(scope="session")
def native_runner(home):
    return build_runner(home)


@pytest.fixture(scope="session")
def host(home):
    return inventory.resolve("host.sme2-off", home)


@pytest.fixture(scope="session")
def host_run(home, exports, native_runner, host):
    """One real profiling session of tiny_seg fp32 on the host with the native runner."""

    return session.run_session(
        home, exports["fp32"], host, threads=1, iterations=30, warmup=3, runner_kind="native", binary=native_runner
    )


@pytest.fixture(scope="session")
def qemu_setup(home):
    """`sme2 setup` for real: QEMU >= 10.1, the aarch64 wheel, the HWCAP2 probe."""

    return toolsetup.setup(home)


@pytest.fixture(scope="session")
def qemu_runs(home, qemu_setup, exports):
    """tiny_seg fp32 and int8 on the emulated SME2 pair, interleaved, as `sme2 profile` runs them."""

    plan = session.ProfilePlan(
        model="tiny_seg",
        dtypes=["fp32", "int8"],
        targets=["armv9-qemu.sme2-on", "armv9-qemu.sme2-off"],
        iterations=50,
        warmup=1,
    )
    results = pipeline.profile_and_store(plan, home)
    return {(r.record.dtype, r.record.sme2): r for r in results}
