"""Session-wide real artifacts, each made the first time a test asks for it: one data root, the
default model exported per dtype on first use, the native runner built once, one freshly profiled
run, and a recorded run checked into tests/data/ (no export, build or run needed).

Tiers (markers registered in pyproject.toml, `--strict-markers`): `qemu` (QEMU >= 10.1 and the
emulated SME2 set-up), `ssh` (a real sshd, root), `browser` (headless Chromium), `slow` (full-size
models, case-study exports, runs of minutes). The fast tier deselects all four:
`./scripts/test.sh --fast`. A test that uses the `qemu_setup` or `qemu_runs` fixture, directly or
through another fixture, is marked `qemu` here, so no such test can land in the fast tier."""

from __future__ import annotations

import os
import sys
import tempfile
import shutil
import warnings
from collections.abc import Mapping
from pathlib import Path

import pytest

from kit import pipeline
from kit.core.home import DataRoot
from kit.core.settings import Measure
from kit.counts import qemu_build
from kit.devices import inventory, toolsetup
from kit.export import artifact, exporter
from kit.models import registry
from kit.profile import armkit as armkit_files
from kit.profile import session
from kit.runners.build import build_runner
from kit.stats import categories, summary

warnings.filterwarnings("ignore")
DTYPES = ("fp32", "fp16", "int8", "int8-dynamic")
DATA = Path(__file__).resolve().parent / "data"
RECORDED_RUN = DATA / "tiny_seg-fp32-host"  # see tests/data/README.md
QEMU_FIXTURES = {"qemu_setup", "qemu_runs", "counting_setup"}
# The three case-study models exported in every dtype and run on the emulated pair: tens of minutes
# cold on 2 cores, so their own tier (nightly: ./scripts/test.sh --case-studies), not every push's.
CASE_STUDY_FIXTURES = {"model_exports", "model_runs"}


def pytest_configure(config):
    # A source tree `sme2 source fetch` left on this machine must not change what tests expect
    # (tests that want one set EXECUTORCH_REPO, or their own SME2_SOURCE_CACHE).
    os.environ["SME2_SOURCE_CACHE"] = tempfile.mkdtemp(prefix="sme2-no-fetched-sources-")


# Files whose tests share an expensive session fixture run on one worker, so it is made once per
# tier rather than once per worker: qemu_runs (the emulated SME2 pair, fp32 and int8, counted) is
# about a minute of QEMU on 2 cores.
SAME_WORKER = {
    name: "qemu_runs"
    for name in ("test_reports.py", "test_counts.py", "test_warehouse.py", "test_learning_path.py", "test_qemu.py")
}
# The longest work units (minutes each on 2 cores, CI's --durations), started first: with a unit per
# worker at a time (--dist loadfile, --no-loadscope-reorder) a long one collected last would leave
# the other worker idle at the end (longest-processing-time-first scheduling). Others keep their order.
LONGEST_FIRST = (
    "qemu_runs",
    # Needs no export (recorded runs only): it keeps the other worker busy while the first
    # lowers the default model both would otherwise wait for (the fast tier's first 20 s).
    "test_shared_store.py",
    "test_skills.py",
    "test_security_packages.py",
    "test_dropin.py",
    "test_security_inputs.py",
    "test_dagster.py",
    "test_lab.py",
    "test_export_cache.py",
    "test_fuzz.py",
    "test_onboarding.py",
    "test_ssh.py",
    "test_configs.py",
)


def pytest_xdist_make_scheduler(config, log):
    """--dist loadfile, with SAME_WORKER's files as one work unit."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class SharedFixtureScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            file = super()._split_scope(nodeid)
            return SAME_WORKER.get(Path(file).name, file)

    return SharedFixtureScheduling(config, log)


@pytest.hookimpl(tryfirst=True)  # before -m deselects
def pytest_collection_modifyitems(items):
    not_linux = not sys.platform.startswith("linux")
    for item in items:
        if QEMU_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.qemu)
        if CASE_STUDY_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.casestudy)
        if not_linux and item.get_closest_marker("qemu"):
            # qemu-user is Linux-only; on a Mac the fast tier is what runs (docs/targets.md, "A Mac CI job")
            item.add_marker(pytest.mark.skip(reason=f"the emulated SME2 targets need Linux (this is {sys.platform})"))
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    unit = lambda item: SAME_WORKER.get(item.path.name, item.path.name)  # noqa: E731
    items.sort(key=lambda item: rank.get(unit(item), len(rank)))  # stable: a unit's tests keep their order


@pytest.fixture(scope="session")
def home(tmp_path_factory) -> DataRoot:
    root = DataRoot.resolve(tmp_path_factory.mktemp("sme2home"))
    os.environ["SME2_HOME"] = str(root.path)
    return root


@pytest.fixture(scope="session")
def tiny():
    return registry.get("tiny_seg")


class LazyExports(Mapping):
    """dtype -> the `small` export of the default model, exported the first time it is asked for
    (the fast tier only ever exports fp32)."""

    def __init__(self, root: DataRoot, pkg):
        self.root, self.pkg, self.done = root, pkg, {}

    def __getitem__(self, dtype: str) -> artifact.Export:
        if dtype not in DTYPES:
            raise KeyError(dtype)
        if dtype not in self.done:
            self.done[dtype] = exporter.export_variant(self.pkg, dtype, "small", self.root)
        return self.done[dtype]

    def __iter__(self):
        return iter(DTYPES)

    def __len__(self) -> int:
        return len(DTYPES)


@pytest.fixture(scope="session")
def exports(home, tiny) -> LazyExports:
    return LazyExports(home, tiny)


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
        home,
        exports["fp32"],
        host,
        session.Measurement(threads=1, iterations=30, warmup=3, runner_kind="native", binary=native_runner),
    )


@pytest.fixture(scope="session")
def recorded_run(tmp_path_factory) -> session.ProfileResult:
    """The recorded run in tests/data (tiny_seg fp32 small on the host, native runner, 1 warmup +
    3 iterations), re-read from its files into a run folder of its own, with the Arm-kit files
    written as a profiling session writes them."""
    folder = tmp_path_factory.mktemp("recorded") / "runs" / "recorded-tiny_seg-fp32-host"
    shutil.copytree(RECORDED_RUN, folder)
    run = session.load_run(folder)
    summary.write(run.analysis, folder, run.record.stem, name=f"{run.record.variant} on {run.record.target}")
    armkit_files.write_run_files(folder, run.record, run.analysis, run.trace, categories.load_rules())
    return run


@pytest.fixture(scope="session")
def qemu_setup(home):
    """`sme2 setup` for real: QEMU >= 10.1, the aarch64 wheel, the HWCAP2 probe."""

    return toolsetup.setup(home)


@pytest.fixture(scope="session")
def counting_setup(home, qemu_setup):
    """`sme2 setup --counts` for real: the plugin-capable QEMU (built once per machine, cached in
    $SME2_BUILD_CACHE; scripts/setup.sh builds it before the tests) and the counting plugin."""

    return qemu_build.setup_counting(home)


@pytest.fixture(scope="session")
def qemu_runs(home, qemu_setup, counting_setup, exports):
    """tiny_seg fp32 and int8 on the emulated SME2 pair, interleaved, as `sme2 profile` runs them
    (counted: every event's instruction counts, as wherever `sme2 setup --counts` was done)."""

    plan = session.ProfilePlan(
        model="tiny_seg",
        dtypes=["fp32", "int8"],
        targets=["armv9-qemu.sme2-on", "armv9-qemu.sme2-off"],
        measure=Measure(iterations=50, warmup=1),
    )
    results = pipeline.profile_and_store(plan, home)
    return {(r.record.dtype, r.record.sme2): r for r in results}
