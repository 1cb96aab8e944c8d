"""Values read from disk are checked like command-line arguments.

- devices.toml: an ssh user/host/port, an adb serial or a remote folder that could be read as an
  option (`-oProxyCommand=...`) or carry shell syntax is refused when the file is loaded, and the
  ssh/scp argv never lets the destination be an option.
- run.json: a crafted run folder (model "../../../tmp/evil", run_id "../x", stem "/etc/x", ...) is
  refused by `sme2 trace`, `sme2 analyze`, `sme2 datamovement` and warehouse ingestion, and
  nothing is written outside the data root.
- `sme2 ui`: SIGTERM stops dagster dev, the webserver, the daemon and the code servers.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kit.core.errors import Sme2Error, TargetError
from kit.core.home import DataRoot
from kit.devices import inventory
from kit.devices.transports.adb import AdbTransport
from kit.devices.transports.ssh import SshTransport
from kit.profile.runrecord import RunRecord
from kit.store import ingest, warehouse
from tests.runfolder import clone_run, files_under, real_run_folder

# ---------------------------------------------------------------- devices.toml

SSH_DEVICE = '[device.{name}]\ntransport = "ssh"\nplatform = "linux-aarch64"\nhost = "board.local"\n'
ADB_DEVICE = '[device.{name}]\ntransport = "adb"\nplatform = "android-arm64-v8a"\nrecipe = "source"\nserial = "R5CT1"\n'

HOSTILE_PROPERTIES = [
    (SSH_DEVICE, "user", '"-oProxyCommand=touch /tmp/pwned"'),
    (SSH_DEVICE, "user", '"root@evil"'),
    (SSH_DEVICE, "user", '"Root Admin"'),
    (SSH_DEVICE, "host", '"-oProxyCommand=touch /tmp/pwned"'),
    (SSH_DEVICE, "host", '"board.local;reboot"'),
    (SSH_DEVICE, "host", '"board local"'),
    (SSH_DEVICE, "host", '"user@board.local"'),
    (SSH_DEVICE, "host", '"[not-an-ipv6]"'),
    (SSH_DEVICE, "host", '""'),
    (SSH_DEVICE, "port", "0"),
    (SSH_DEVICE, "port", "65536"),
    (SSH_DEVICE, "port", '"22 -oProxyCommand=x"'),
    (SSH_DEVICE, "port", "true"),
    (SSH_DEVICE, "remote_dir", '"relative/dir"'),
    (SSH_DEVICE, "remote_dir", '"/tmp/../etc"'),
    (SSH_DEVICE, "remote_dir", '"/tmp/$(reboot)"'),
    (ADB_DEVICE, "serial", '"-e"'),
    (ADB_DEVICE, "serial", '"R5CT1 shell reboot"'),
    (ADB_DEVICE, "serial", '"R5CT1;reboot"'),
]


def _toml_with(template: str, name: str, key: str, value: str) -> str:
    text = template.format(name=name)
    lines = [line for line in text.splitlines() if not line.startswith(f"{key} =")]
    return "\n".join(lines + [f"{key} = {value}"]) + "\n"


@pytest.mark.parametrize("template,key,value", HOSTILE_PROPERTIES, ids=[f"{k}={v}" for _, k, v in HOSTILE_PROPERTIES])
def test_hostile_device_property_is_refused_at_load_naming_file_device_and_key(tmp_path, template, key, value):
    path = tmp_path / "devices.toml"
    path.write_text(_toml_with(template, "evil", key, value))
    with pytest.raises(Sme2Error) as info:
        inventory.load_registry(extra_file=path)
    message = info.value.message
    assert str(path) in message and "'evil'" in message and f"'{key}'" in message, message
    assert str(path) in info.value.hint  # says which file to fix


def test_valid_device_properties_load(tmp_path):
    path = tmp_path / "devices.toml"
    path.write_text(
        SSH_DEVICE.format(name="board")
        + 'user = "ci_runner-1.x"\nport = 2222\nremote_dir = "/home/ci/sme2-work"\n\n'
        + SSH_DEVICE.format(name="v6").replace('"board.local"', '"[fe80::1]"')
        + "\n"
        + SSH_DEVICE.format(name="v4").replace('"board.local"', '"192.168.1.20"')
        + "\n"
        + ADB_DEVICE.format(name="phone").replace('"R5CT1"', '"192.168.1.5:5555"')
    )
    reg = inventory.load_registry(extra_file=path)
    assert reg["board"].props["user"] == "ci_runner-1.x" and reg["board"].props["port"] == 2222
    assert reg["phone"].props["serial"] == "192.168.1.5:5555"


def _ssh(host="board.local", user="ci", port=2222, remote_dir="/tmp/sme2") -> SshTransport:
    return SshTransport("board", host=host, user=user, port=port, state_dir="/tmp/state", remote_dir=remote_dir)


def test_ssh_argv_puts_the_destination_after_double_dash():
    argv = _ssh().ssh_argv(["uname", "-m"])
    sep = argv.index("--")
    assert argv[sep + 1] == "board.local"  # the host comes after "--": never an option
    assert argv[sep + 2 :] == ["uname -m"] and len(argv) == sep + 3  # one quoted remote command
    assert argv[argv.index("-l") + 1] == "ci" and argv[argv.index("-p") + 1] == "2222"
    assert "ci@board.local" not in argv


def test_ssh_argv_for_ipv6_and_scp():
    t = _ssh(host="[fe80::1]")
    argv = t.ssh_argv(["true"])
    assert argv[argv.index("--") + 1] == "fe80::1"  # ssh takes the bare address
    scp = t.scp_argv("/local/file", f"{t.destination}:/tmp/sme2/file")
    sep = scp.index("--")
    assert scp[sep + 1 :] == ["/local/file", "ci@[fe80::1]:/tmp/sme2/file"]
    assert scp[scp.index("-P") + 1] == "2222"


@pytest.mark.parametrize(
    "kw",
    [{"user": "-oProxyCommand=x"}, {"host": "-oProxyCommand=x"}, {"port": 0}, {"remote_dir": "-rf"}],
    ids=["user", "host", "port", "remote_dir"],
)
def test_a_transport_built_directly_refuses_option_like_values(kw):
    with pytest.raises(TargetError, match="ssh device 'board'"):
        _ssh(**kw)


def test_adb_transport_refuses_option_like_serials_and_pushes_absolute_paths(monkeypatch, tmp_path):
    with pytest.raises(TargetError, match="adb device 'phone'"):
        AdbTransport("phone", serial="-e")
    calls = []
    monkeypatch.setattr("kit.devices.transports.adb.run_local", lambda argv, timeout: calls.append(argv))
    monkeypatch.chdir(tmp_path)
    AdbTransport("phone", serial="R5CT1").copy_to(Path("-rf"), "/data/local/tmp/sme2/x")
    assert calls[0][:4] == ["adb", "-s", "R5CT1", "push"] and calls[0][4] == str(tmp_path / "-rf")


@pytest.mark.skipif(not shutil.which("ssh"), reason="no ssh client")
def test_hostile_ssh_user_never_runs_a_proxy_command(tmp_path):
    """End to end through resolve(): the old argv (`ssh ... -oProxyCommand=touch X@host`) ran it."""
    marker = tmp_path / "pwned"
    root = DataRoot.resolve(tmp_path / "home")
    root.user_devices.write_text(
        '[device.evil]\ntransport = "ssh"\nplatform = "linux-x86_64"\nhost = "127.0.0.1"\nport = 1\n'
        f'user = "-oProxyCommand=touch {marker}"\nremote_dir = "{tmp_path}/remote"\n'
    )
    with pytest.raises(Sme2Error) as info:
        inventory.resolve("evil.sme2-off", root)
    assert str(root.user_devices) in info.value.message and "'user'" in info.value.message
    assert not list(tmp_path.glob("pwned*"))  # the old argv made "pwned@127.0.0.1"


# ---------------------------------------------------------------- crafted run folders

HOSTILE_RUNS = {
    "model": {"model": "../../../tmp/evil"},
    "run_id": {"run_id": "../x"},
    "stem": {"stem": "/etc/x"},
    "dtype": {"dtype": "../../../tmp/evil"},
    "backend": {"backend": "../../x"},
    "size": {"size": "../x"},
    "device": {"device": "../../evil", "target": "../../evil.sme2-off"},
    "target": {"target": "../../../tmp/evil.sme2-off"},
    "runner": {"runner": "../x"},
}


@pytest.fixture(scope="module")
def real_run(home):
    return real_run_folder(home)


@pytest.fixture(scope="module")
def cli():
    from kit.cli.main import app

    runner = CliRunner()

    def invoke(*args):
        result = runner.invoke(app, list(args), env={"COLUMNS": "5000"})
        return result.exit_code, " ".join(result.output.split())

    return invoke


@pytest.mark.parametrize("field", sorted(HOSTILE_RUNS))
def test_crafted_run_folder_is_refused_and_nothing_leaves_the_data_root(tmp_path, real_run, cli, field):
    sandbox = tmp_path / "sandbox"
    # Deep enough that "../../../tmp/evil" from reports/ still lands inside the sandbox: listable.
    root = DataRoot.resolve(sandbox / "a" / "b" / "home")
    run = clone_run(real_run, root, "crafted", **HOSTILE_RUNS[field])
    run_json = str(run / "run.json")
    before = files_under(sandbox)
    outside_before = files_under(sandbox) - files_under(root.path)

    with pytest.raises(Sme2Error) as info:
        RunRecord.load(run)
    assert run_json in info.value.message and f"field {field!r}" in info.value.message

    for args in (
        ("trace", str(run), "--home", str(root.path)),
        ("analyze", str(run), "--home", str(root.path), "--json"),
        ("datamovement", str(run), "--json"),
        ("warehouse", "rebuild", "--home", str(root.path)),
    ):
        code, output = cli(*args)
        # 2: the command refused; rebuild skips the folder, lists it with the reason and exits 1.
        assert code == (1 if args[0] == "warehouse" else 2), (args, output)
        assert run_json in output and f"field {field!r}" in output, (args, output)

    with pytest.raises(Sme2Error, match=f"field {field!r}"):
        ingest.ingest_run(root, run)
    if root.warehouse.exists():
        assert warehouse.Warehouse.at(root).query("SELECT count(*) AS n FROM runs").n[0] == 0
    assert files_under(sandbox) - files_under(root.path) == outside_before  # nothing written outside
    assert not [p for p in files_under(sandbox) - before if p.suffix == ".json" and "traces" in p.parts]


def test_untouched_copy_of_a_real_run_still_loads_and_ingests(tmp_path, real_run):
    root = DataRoot.resolve(tmp_path / "home")
    run = clone_run(real_run, root, "plain-copy")
    assert RunRecord.load(run).run_id == "plain-copy"
    assert ingest.ingest_run(root, run) is True


@pytest.mark.parametrize(
    "name,text",
    [
        ("run.json", "{not json"),
        ("run.json", "[1, 2]"),
        ("run.json", '{"run_id": "x"}'),
        ("timing.json", '{"latencies_ms": ["1", null]}'),
        ("timing.json", '{"latencies_ms": []}'),
        ("timing.json", "\xff\xfe"),
        ("program_map.json", '{"pte_sha256": "x", "instructions": [{"index": "0"}]}'),
    ],
)
def test_corrupt_run_files_are_clean_errors_naming_the_file(tmp_path, real_run, cli, name, text):
    root = DataRoot.resolve(tmp_path / "home")
    run = clone_run(real_run, root, "corrupt")
    (run / name).write_text(text)
    code, output = cli("analyze", str(run), "--home", str(root.path), "--json")
    assert code == 2 and str(run / name) in output, output
    with pytest.raises(Sme2Error, match=name):
        ingest.ingest_run(root, run)


# ---------------------------------------------------------------- sme2 ui and SIGTERM


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


def _descendants(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        for child in _children(todo.pop()) - found:
            found.add(child)
            todo.append(child)
    return found


def _group_members(pgid: int) -> set[int]:
    """Running processes of a process group (runs the daemon launched later included)."""
    out = subprocess.run(["ps", "-eo", "pid=,pgid=,stat="], capture_output=True, text=True).stdout
    rows = (line.split()[:3] for line in out.splitlines())
    return {int(pid) for pid, group, stat in rows if int(group) == pgid and not stat.startswith("Z")}


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _running(pid: int) -> bool:
    """Exists and is not a zombie (a zombie holds no port and runs nothing)."""
    out = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True).stdout.strip()
    return bool(out) and not out.startswith("Z")


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _http_ok(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=3) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.mark.slow
def test_sigterm_stops_sme2_ui_and_every_dagster_process(tmp_path):
    port = _free_port()
    root = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    env["SME2_HOME"] = str(root)
    log = open(tmp_path / "ui.log", "w")
    ui = subprocess.Popen(
        [sys.executable, "-m", "kit.cli", "ui", "--home", str(root), "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # our own cleanup can reach it however the test ends
    )
    tree: set[int] = set()
    groups: set[int] = set()
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not _http_ok(port):
            assert ui.poll() is None, (tmp_path / "ui.log").read_text()
            time.sleep(1)
        assert _http_ok(port), f"the UI never answered on {port}:\n{(tmp_path / 'ui.log').read_text()}"
        time.sleep(3)  # let the daemon start its code server too
        tree = _descendants(ui.pid)
        assert len(tree) >= 3, tree  # dagster dev, the webserver, the daemon (+ code servers)
        groups = {g for g in map(_pgid, tree) if g is not None}

        ui.send_signal(signal.SIGTERM)
        ui.wait(timeout=90)  # sme2 ui itself exits (dagster's graceful stop, else SIGKILL after 30 s)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (_port_open(port) or any(_running(p) for p in tree)):
            time.sleep(0.5)
        assert not _port_open(port), "the UI port is still open after SIGTERM"
        assert not [p for p in tree if _running(p)], "dagster processes outlived SIGTERM"
        assert not set().union(*(_group_members(g) for g in groups)), "processes of dagster's group remain"
        assert ui.returncode == 128 + signal.SIGTERM
    finally:
        leftovers = tree | (_descendants(ui.pid) if ui.poll() is None else set()) | {ui.pid}
        for pid in leftovers | set().union(*(_group_members(g) for g in groups | {ui.pid})):
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
        ui.wait(timeout=10)
        log.close()
