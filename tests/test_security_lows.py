"""The small holes a hostile-input probe found, each closed and kept closed: device entries that
reach argv, the ssh control folder, repeated or absurd run parameters, padded programs, packages
that print or hang at import, a full disk under a batch ingest or the shared store, a read-only
data root."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kit.core import limits
from kit.core.errors import DiskFullError, ExportError, ModelPackageError, Sme2Error, TargetError, WarehouseError
from kit.core.home import DataRoot
from kit.devices import inventory
from kit.devices.transports import ssh
from kit.export import importer
from kit.models import exitguard, registry
from kit.store import ingest, runrows
from kit.store.shared import SharedStore
from kit.store.warehouse import Warehouse
from tests.runfolder import clone_run
from tests.disks import fill, small_disk

RECORDED = Path(__file__).resolve().parent / "data" / "tiny_seg-fp32-host"


@pytest.mark.parametrize(
    "entry, field",
    [
        ('env = { "-S/bin/sh -c id #" = "1" }', "env name '-S/bin/sh -c id #' is not a variable name"),
        ('env = { OK = "a\\nb" }', "NUL or newline"),
        ('affinity = "-c 1; id"', "affinity '-c 1; id' is not a CPU list"),
    ],
)
def test_device_env_names_and_affinity_cannot_become_options(tmp_path, entry, field):
    root = DataRoot.resolve(tmp_path)
    (root.path / "devices.toml").write_text(f'[device.board]\ntransport = "local"\n{entry}\n')
    with pytest.raises(Sme2Error, match=f"device 'board'.*{field[:30]}"):
        inventory.load_registry(root)


def test_the_ssh_control_folder_must_be_private(tmp_path):
    base = str(tmp_path)
    planted = tmp_path / f"sme2-ssh-{os.getuid()}"
    planted.mkdir(mode=0o777)
    planted.chmod(0o777)  # someone else's, open to all
    with pytest.raises(TargetError, match="not a private folder"):
        ssh.control_dir(base)
    planted.rmdir()
    (tmp_path / "elsewhere").mkdir()
    planted.symlink_to(tmp_path / "elsewhere")  # a link planted in its place
    with pytest.raises(TargetError, match="not a folder"):
        ssh.control_dir(base)
    planted.unlink()
    made = Path(ssh.control_dir(base))
    assert made.is_dir() and (made.stat().st_mode & 0o777) == 0o700


def test_repeated_thread_counts_and_absurd_iterations_are_refused():
    with pytest.raises(Sme2Error, match="must not repeat"):
        limits.parse_threads("1,1")
    with pytest.raises(Sme2Error, match="from 1 to 100,000"):
        limits.check_iterations(99999999999999)
    assert limits.parse_threads("1,4") == [1, 4]


def test_a_padded_program_is_refused_before_it_is_read(tmp_path, exports):
    pte = exports["fp32"].pte
    declared = importer.check_extent(pte)
    assert declared == pte.stat().st_size  # our own exports carry exactly what their header says
    padded = tmp_path / "padded.pte"
    padded.write_bytes(pte.read_bytes() + b"\0" * 4096)
    with pytest.raises(ExportError, match="4,096 bytes were appended"):
        importer.import_program(padded, DataRoot.resolve(tmp_path / "home"))


def _package(models: Path, name: str, top: str) -> None:
    folder = models / name
    folder.mkdir(parents=True)
    source = (
        (registry.DEFAULT_MODELS_DIR / "tiny_seg" / "model.py").read_text().replace('name="tiny_seg"', f'name="{name}"')
    )
    (folder / "model.py").write_text(source + "\n" + textwrap.dedent(top) + "\n")  # runs at import


def test_a_package_that_prints_cannot_corrupt_json_output(tmp_path):
    models = tmp_path / "models"
    _package(models, "chatty", 'print("hello from the package")')
    proc = subprocess.run(
        [sys.executable, "-m", "kit.cli", "models", "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "SME2_MODELS": str(models), "SME2_HOME": str(tmp_path / "home")},
        timeout=300,
    )
    listed = json.loads(proc.stdout)  # stdout is JSON only
    assert any(m["name"] == "chatty" for m in (listed if isinstance(listed, list) else listed["models"]))
    assert "hello from the package" in proc.stderr


def test_a_package_that_hangs_at_import_is_stopped(tmp_path, monkeypatch):
    models = tmp_path / "models"
    _package(models, "sleepy", "import time\ntime.sleep(3600)")
    monkeypatch.setattr(exitguard, "IMPORT_TIMEOUT_S", 2.0)
    found = {p.name: p for p in registry.discover(models)}
    assert not found["sleepy"].ok and "hangs" in found["sleepy"].error


def test_a_batch_ingest_that_fills_the_disk_fails(tmp_path):
    runs = [clone_run(RECORDED, DataRoot.resolve(tmp_path / "src"), f"batch-run-{i}") for i in range(3)]
    with small_disk(tmp_path / "disk", "8m") as disk:
        wh = Warehouse(disk / "warehouse.duckdb")
        wh.ensure()
        filler = fill(disk)
        with pytest.raises(WarehouseError, match="disk full"):
            wh.insert_each(runrows.rows_from_run(r) for r in runs)
        filler.unlink()


def test_the_shared_stores_disk_full_hint_names_the_store(tmp_path):
    root = DataRoot.resolve(tmp_path / "home")
    ingest.ingest_run(root, clone_run(RECORDED, root, "store-run"))
    with small_disk(tmp_path / "store", "1m") as disk:
        store = SharedStore.of(disk)
        filler = fill(disk)
        with Warehouse.at(root).read(local=True) as conn, pytest.raises(DiskFullError) as e:
            store.publish(conn, "store-run")
        assert "SME2_SHARED_STORE" in e.value.hint and "SME2_HOME" not in e.value.hint
        filler.unlink()


def test_a_read_only_data_root_is_a_message_not_a_traceback(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a read-only file system")
    with small_disk(tmp_path / "ro", "64m") as disk:
        root = DataRoot.resolve(disk / "home")
        ingest.ingest_run(root, clone_run(RECORDED, root, "ro-run"))
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "kit.cli",
                "report",
                "--model",
                "tiny_seg",
                "--dtype",
                "fp32",
                "--home",
                str(root.path),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "cannot write" in out.stderr and "--home" in out.stderr, out.stderr


def test_errors_read_back_the_package_guard():  # the hang guard leaves no alarm behind
    with exitguard.deadline("x", "testing", "here", seconds=5):
        pass
    import signal

    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    with pytest.raises(ModelPackageError):
        with exitguard.deadline("x", "testing", "here", seconds=0.2):
            while True:
                pass
