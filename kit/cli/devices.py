"""`sme2 setup`, `sme2 devices` and `sme2 build-runner`: the emulator, the device inventory and runner binaries."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from kit.cli.common import (
    HomeOpt,
    JsonOpt,
    command,
    console,
    emit_json,
    progress,
    root_of,
)
from kit.devices import inventory, toolsetup
from kit.runners import pathrunner, recipes

app = typer.Typer()


@app.command("setup")
@command
def setup_cmd(home: Optional[Path] = HomeOpt, as_json: bool = JsonOpt):
    """Obtain QEMU >= 10.1, the aarch64 cross compiler and executorch wheel, and prove SME2 on/off
    switching with an aarch64 HWCAP2 probe (for the emulated armv9-qemu targets)."""

    root = root_of(home)
    with progress(None, as_json) as (say, _):
        info = toolsetup.setup(root, say)
    if as_json:
        emit_json(info)
        return
    p = info["probe"]
    console.print(
        f"QEMU {info['qemu_version']}: {info['qemu']}\ncross compiler: {info['cross_cxx']}\naarch64 executorch: {info['executorch_aarch64']}"
    )
    console.print(
        f"probe: -cpu max -> SME2 {'yes' if p['sme2-on']['sme2'] else 'no'}; -cpu max,sme=off -> SME2 {'yes' if p['sme2-off']['sme2'] else 'no'}  [green]ok[/]"
    )


@app.command("devices")
@command
def devices_cmd(
    detect: bool = typer.Option(True, "--detect/--no-detect", help="Contact each device to detect its CPU and SME2."),
    home: Optional[Path] = HomeOpt,
    as_json: bool = JsonOpt,
):
    """List devices, their targets and detected capabilities."""

    root = root_of(home)
    rows = inventory.survey(root, detect=detect)
    if as_json:
        emit_json(rows)
        return
    t = Table(title=f"Devices (defaults: kit/devices/devices.toml; yours: {root.user_devices})")
    for col in ("device", "transport", "platform", "recipe", "targets", "threads", "CPU", "SME2", "status"):
        t.add_column(col)
    for r in rows:
        sme2 = {True: "[green]yes[/]", False: "no", None: "?"}[r["sme2_detected"]]
        t.add_row(
            r["device"],
            r["transport"],
            r["platform"],
            r["recipe"],
            ", ".join(r["targets"]),
            ",".join(map(str, r["threads"])),
            r.get("cpu_model") or "-",
            sme2 + (" (emulated)" if r["emulated"] else ""),
            r["status"],
        )
    console.print(t)


@app.command("build-runner")
@command
def build_runner_cmd(
    target: str = typer.Option("host.sme2-off", "--target", "-t", help="Target whose platform to build for."),
    link: Optional[Path] = typer.Option(
        None,
        "--link",
        help="Also make a symlink to the runner here (e.g. executorch/cmake-out/host/executor_runner), for "
        "configs whose runner_path names an executor_runner: it accepts executor_runner's flags.",
    ),
    home: Optional[Path] = HomeOpt,
    as_json: bool = JsonOpt,
):
    """Build (or reuse) the native C++ runner for a target's platform."""

    root = root_of(home)
    resolved = inventory.resolve(target, root)
    with progress(None, as_json) as (say, _):
        binary = recipes.runner_for(resolved, root, "native", say)
    linked = pathrunner.link(binary, link) if link is not None else None
    if as_json:
        emit_json({"path": str(binary.path), "link": str(linked) if linked else None, **binary.manifest})
    else:
        console.print(
            f"runner for [bold]{binary.manifest['platform']}[/] ({binary.manifest['recipe']}): {binary.path}\n  sha256 {binary.sha256[:16]}..., built in {binary.manifest['build_seconds']}s, executorch {binary.manifest['executorch_version']}"
        )
        if linked:
            console.print(f"  linked: {linked} -> {binary.path}")
