"""`sme2 setup`, `sme2 devices`, `sme2 build-runner` and `sme2 source`: the emulator, the device inventory,
runner binaries and the ExecuTorch source tree."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from kit.cli.common import (
    HomeOpt,
    JsonOpt,
    command,
    counted_progress,
    console,
    emit_json,
    progress,
    root_of,
)
from kit.core import atomic
from kit.core.errors import Sme2Error
from kit.core.names import Target
from kit.counts import qemu_build
from kit.devices import inventory, sourcetree, toolsetup
from kit.runners import pathrunner, recipes, source
from kit.skills import doctor

app = typer.Typer()


@app.command("setup")
@command
def setup_cmd(
    counts: bool = typer.Option(
        False,
        "--counts",
        help="Also build the plugin-capable QEMU (from Debian's QEMU source, cached in $SME2_BUILD_CACHE; about 4 "
        "minutes on 2 cores the first time) and our instruction-counting plugin: instruction counts per operator.",
    ),
    home: Optional[Path] = HomeOpt,
    as_json: bool = JsonOpt,
):
    """Obtain QEMU >= 10.1, the aarch64 cross compiler and executorch wheel, and prove SME2 on/off
    switching with an aarch64 HWCAP2 probe (for the emulated armv9-qemu targets). --counts adds the
    counting QEMU and plugin, proved on a probe of known SME instructions."""

    root = root_of(home)
    with counted_progress(None, as_json) as (say, _, count):
        info = toolsetup.setup(root, say)
        if counts:
            tools = qemu_build.setup_counting(root, say, count)
            info["counting"] = {"qemu": str(tools.qemu), "plugin": str(tools.plugin), **tools.manifest}
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
    if counts:
        c = info["counting"]
        console.print(
            f"instruction counts: QEMU {c['source']} with plugins ({c['qemu']}), plugin {c['plugin']}; probe counted "
            f"{c['probe']['counts']['sme_outer']} outer products as expected  [green]ok[/]"
        )


@app.command("devices")
@command
def devices_cmd(
    detect: bool = typer.Option(True, "--detect/--no-detect", help="Contact each device to detect its CPU and SME2."),
    home: Optional[Path] = HomeOpt,
    as_json: bool = JsonOpt,
):
    """List devices, their detected capabilities and, per target, the runner recipe that produces it
    or what is missing for it."""

    root = root_of(home)
    rows = inventory.survey(root, detect=detect)
    if as_json:
        emit_json(rows)
        return
    console.print(devices_table(rows, root.user_devices))


def devices_table(rows: list[dict], user_file: Path) -> Table:
    """One line per target: its device, what was detected, the runner that produces it, and what is
    missing (with what to do) when it cannot be produced."""
    t = Table(title=f"Devices (defaults: kit/devices/devices.toml; yours: {user_file})")
    for col in ("device", "transport", "platform", "CPU", "SME2", "target", "runner", "status"):
        t.add_column(col, overflow="fold")
    for r in rows:
        sme2 = {True: "[green]yes[/]", False: "no", None: "?"}[r["sme2_detected"]]
        first = True
        for plan in r["plans"]:
            if r["status"] not in ("ok", "not checked"):
                status = r["status"]
            elif plan["ok"]:
                status = "[green]ok[/]" if r["status"] == "ok" else "not checked"
            else:
                status = "; ".join(f"needs {m} -> {todo}" for m, todo in zip(plan["missing"], plan["todo"]))
            t.add_row(
                r["device"] if first else "",
                r["transport"] if first else "",
                r["platform"] if first else "",
                (r.get("cpu_model") or "-") if first else "",
                (sme2 + (" (emulated)" if r["emulated"] else "")) if first else "",
                plan["target"],
                plan["runner"],
                status,
            )
            first = False
    return t


@app.command("build-runner")
@command
def build_runner_cmd(
    target: str = typer.Option("host.sme2-off", "--target", "-t", help="Target whose device (platform) to build for."),
    recipe: Optional[str] = typer.Option(
        None, "--recipe", help="wheel | source (default: what the target needs; see `sme2 devices`)."
    ),
    variants: list[str] = typer.Option(
        [],
        "--variant",
        help="sme2-on | sme2-off | kernel-log (repeatable; default: the target's SME2 flag). Source builds only "
        "switch SME2 off or log kernels.",
    ),
    link: Optional[Path] = typer.Option(
        None,
        "--link",
        help="Also make a symlink to the runner here (e.g. executorch/cmake-out/host/executor_runner), for "
        "configs whose runner_path names an executor_runner: it accepts executor_runner's flags.",
    ),
    home: Optional[Path] = HomeOpt,
    as_json: bool = JsonOpt,
):
    """Build (or reuse) native runners: the wheel runner, or ExecuTorch from source (EXECUTORCH_REPO) as
    the SME2-on, SME2-off and kernel-log runners, each cached by sources, flags and toolchain."""

    root = root_of(home)
    if recipe is not None and recipe not in recipes.RECIPES:
        raise Sme2Error(f"unknown recipe {recipe!r}", f"use one of {', '.join(recipes.RECIPES)}")
    bad = [v for v in variants if v not in source.VARIANTS]
    if bad:
        raise Sme2Error(f"unknown runner variant {bad[0]!r}", f"use one of {', '.join(source.VARIANTS)}")
    tgt = Target.parse(target)
    if recipe is None and not variants:
        resolved = inventory.resolve(target, root)  # checks the target and picks the recipe it needs
        device, chosen, wanted = resolved.device, resolved.recipe, [f"sme2-{'on' if tgt.sme2 else 'off'}"]
    else:
        registry = inventory.load_registry(root)
        device = registry.get(tgt.device)
        if device is None:
            raise Sme2Error(f"unknown device {tgt.device!r}", f"known devices: {', '.join(sorted(registry))}")
        chosen = recipe or device.recipe
        wanted = variants or [f"sme2-{'on' if tgt.sme2 else 'off'}"]
        if chosen == "wheel" and any(v != f"sme2-{'on' if tgt.sme2 else 'off'}" for v in wanted):
            raise Sme2Error(
                "the wheel recipe builds one runner per platform (its XNNPACK picks SME2 at run time)",
                "use --recipe source for the SME2-off and kernel-log runners",
            )
    built = []
    with progress(None, as_json) as (say, _):
        for variant in wanted:
            binary = recipes.build_for(
                device,
                root,
                sme2=variant != "sme2-off",
                recipe=chosen,
                kernel_log=variant == "kernel-log",
                progress=say,
            )
            built.append({"variant": variant, "path": str(binary.path), **binary.manifest})
    if link is not None:  # an executor_runner-compatible path for configs (the last variant built)
        built[-1]["link"] = str(pathrunner.link(binary, link))
    if as_json:
        emit_json(built if len(built) > 1 else built[0])
        return
    for b in built:
        console.print(
            f"runner for [bold]{b['platform']}[/] ({b['recipe']}, {b['variant']}): {b['path']}\n"
            f"  sha256 {b['binary_sha256'][:16]}..., built in {b['build_seconds']}s, executorch {b['executorch_version']}"
            + (f" (source build {b['executorch_build']})" if b.get("executorch_build") else "")
        )
        if b.get("link"):
            console.print(f"  linked: {b['link']} -> {b['path']}")


source_app = typer.Typer(
    help="The ExecuTorch source tree the source recipe builds (SME2 off on SME2 hardware, Android, kernel logs).",
    no_args_is_help=True,
)


@source_app.command("fetch")
@command
def source_fetch_cmd(
    commit: Optional[str] = typer.Option(
        None,
        "--commit",
        help="Commit, tag or branch (default: the commit the installed executorch wheel was built from).",
    ),
    url: str = typer.Option(
        sourcetree.DEFAULT_URL, "--url", help="Repository: https://, ssh://, user@host:path or a local mirror's path."
    ),
    dest: Optional[Path] = typer.Option(
        None,
        "--dest",
        help="Where to clone (a folder named executorch). Default: $SME2_SOURCE_CACHE/executorch, else "
        "~/.cache/sme2/sources/executorch, which the source recipe then uses without EXECUTORCH_REPO.",
    ),
    as_json: bool = JsonOpt,
):
    """Clone ExecuTorch at the wheel's commit with every submodule (shallow where the server allows),
    verify it by git's hashes and record what was fetched. Resumable: run it again after an
    interruption. Afterwards `sme2 devices` shows host.sme2-off (and Android targets) as buildable."""
    with counted_progress(None, as_json) as (say, _, count):
        manifest = sourcetree.fetch(dest, url, commit, say, count)
    if as_json:
        emit_json(manifest)
        return
    default = dest is None or Path(dest).expanduser().absolute() == sourcetree.default_dest()
    console.print(
        f"ExecuTorch {manifest['commit'][:12]} at {manifest['path']}: {len(manifest['submodules'])} submodules at their "
        f"pinned commits, tree {manifest['tree'][:12]} ({manifest['seconds']:.0f} s)  [green]ok[/]"
    )
    console.print(
        "the source recipe uses it (sme2 devices)"
        if default
        else f"point the source recipe at it: export EXECUTORCH_REPO={manifest['path']}"
    )


@source_app.command("status")
@command
def source_status_cmd(as_json: bool = JsonOpt):
    """Which ExecuTorch source tree the source recipe would use, and where it came from."""
    tree = sourcetree.configured_tree({})
    fetched = sourcetree.fetched_tree()
    info = {
        "tree": tree,
        "from": "EXECUTORCH_REPO" if os.environ.get("EXECUTORCH_REPO") else ("sme2 source fetch" if fetched else None),
        "fetched": sourcetree.fetched_manifest() if fetched else None,
        "wheel_commit": sourcetree.wheel_commit(),
    }
    if as_json:
        emit_json(info)
        return
    if tree is None:
        console.print("no ExecuTorch source tree: run `sme2 source fetch` (or set EXECUTORCH_REPO)")
        return
    console.print(f"{tree}  (from {info['from']})")
    if fetched:
        same = info["fetched"]["commit"] == info["wheel_commit"]
        console.print(
            f"commit {info['fetched']['commit'][:12]} ({'the wheel' + chr(39) + 's' if same else 'not the wheel' + chr(39) + 's'}"
            f" {info['wheel_commit'][:12]}), {len(info['fetched']['submodules'])} submodules"
        )


@app.command("doctor")
@command
def doctor_cmd(
    report: bool = typer.Option(
        False, "--report", help="Also write everything to one JSON file to send to a maintainer (see --out)."
    ),
    target: Optional[str] = typer.Option(
        None,
        "--target",
        help="The target to describe and profile (default: host.sme2-on with SME2, else host.sme2-off).",
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="The report file (default: ./sme2-doctor-<date>.json)."
    ),
    profile: bool = typer.Option(
        True, "--profile/--no-profile", help="Run the short tiny_seg profile (about a minute)."
    ),
    home: Optional[Path] = HomeOpt,
    as_json: bool = JsonOpt,
):
    """What this machine and a target are, as the platform sees them: platform, packages, toolchain
    versions, the device's SME2 flags, the environment check, the ExecuTorch source tree and a short
    profile of tiny_seg with the label check. --report writes it to one file (it holds paths, the host
    name and device serials: review it before sending)."""
    root = root_of(home)
    with progress(None, as_json) as (say, _):
        say("collecting versions, the device and a short profile")
        info = doctor.report(root, target, profile)
    path = None
    if report:
        path = Path(out) if out else Path.cwd() / f"sme2-doctor-{info['created'][:10]}.json"
        atomic.write_json(path, info)
    if as_json:
        emit_json({**info, "report_file": str(path) if path else None})
        return
    p, dev, prof = info["platform"], info["device"] or {}, info["profile"]
    console.print(f"platform {p['sme2_platform']}, Python {p['python']}; " + ", ".join(
        f"{k} {v}" for k, v in info["packages"].items() if v))  # fmt: skip
    for name, line in info["toolchain"].items():
        console.print(f"  {name}: {escape(str(line)) if line else '[yellow]not found[/]'}")
    if "error" in dev:
        console.print(f"[red]{escape(dev['target'])}: {escape(dev['error'])}[/]  -> {escape(dev['hint'])}")
    else:
        c = dev["conditions"]
        console.print(
            f"{dev['target']}: {escape(str(c.get('cpu_model') or c.get('model') or '?'))}, SME2 "
            f"{'detected' if dev['sme2_detected'] else 'not detected'}, runner recipe {dev['recipe']}"
        )
    for problem in info["env_setup_problems"]:
        console.print(f"  [yellow]env-setup:[/] {escape(problem['message'])} -> {escape(problem['fix'])}")
    if prof:
        if prof["label_check"] == "passed":
            console.print(
                f"tiny_seg fp32 on {prof['target']}: {prof['e2e_median_ms']:.3f} ms median ({prof['what_the_time_is']}); "
                f"label check passed ({prof['sme2_kernels_seen']} SME2 operator types)"
            )
        else:
            console.print(f"[red]tiny_seg fp32 on {prof['target']}: label check {prof['label_check']}[/]: "
                          f"{escape(prof.get('reason') or prof.get('error') or '')}")  # fmt: skip
    if path:
        console.print(f"report: {path}  (it holds paths, the host name and device serials: review it before sending)")
