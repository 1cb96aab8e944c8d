"""Regenerate tests/data/counts-tiny_seg-fp32/: the counting runs of tiny_seg fp32 (size small) on
the emulated SME2 pair (armv9-qemu.sme2-on and .sme2-off): each side's counting ETDump and the
plugin's counts, and the export's program map. Needs `sme2 setup --counts`. From the repository
root: `python tests/data/make_counted_runs.py`."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from kit.core.home import DataRoot  # noqa: E402
from kit.core.settings import Measure
from kit.counts import qemu_build  # noqa: E402
from kit.counts import table as count_table  # noqa: E402
from kit.devices import toolsetup  # noqa: E402
from kit.profile import session  # noqa: E402

OUT = HERE / "counts-tiny_seg-fp32"


def main() -> None:
    root = DataRoot.resolve(Path(tempfile.mkdtemp(prefix="sme2-fixture-")))
    toolsetup.setup(root)
    qemu_build.setup_counting(root)
    plan = session.ProfilePlan(
        model="tiny_seg",
        dtypes=["fp32"],
        targets=["armv9-qemu.sme2-on", "armv9-qemu.sme2-off"],
        counts=True,
        measure=Measure(iterations=2, warmup=1),
    )
    results = session.execute(plan, root)
    shutil.rmtree(OUT, ignore_errors=True)
    for r in results:
        side = OUT / r.record.target.split(".")[1]
        side.mkdir(parents=True)
        for name in (count_table.PLUGIN_FILE, "etdump.etdp"):
            shutil.copy2(r.run_dir / count_table.FOLDER / name, side / name)
    shutil.copy2(results[0].run_dir / "program_map.json", OUT / "program_map.json")
    shutil.rmtree(root.path, ignore_errors=True)
    print(f"wrote {OUT} ({sum(p.stat().st_size for p in OUT.rglob('*') if p.is_file()) // 1024} KB)")


if __name__ == "__main__":
    main()
