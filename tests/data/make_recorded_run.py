"""Regenerate tests/data/tiny_seg-fp32-host/: a real run of tiny_seg fp32 (size small) on the host
with the native runner, 1 warmup + 3 measured iterations, and the int8 export's program map in
tests/data/tiny_seg-int8/. From the repository root: `python tests/data/make_recorded_run.py`."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from kit.core.home import DataRoot  # noqa: E402
from kit.devices import inventory  # noqa: E402
from kit.export import exporter  # noqa: E402
from kit.models import registry  # noqa: E402
from kit.profile import session  # noqa: E402
from kit.runners.build import build_runner  # noqa: E402

OUT = HERE / "tiny_seg-fp32-host"
FILES = ("run.json", "timing.json", "etdump.json", "etdump.etdp", "program_map.json", "export_meta.json")


def main() -> None:
    root = DataRoot.resolve(Path(tempfile.mkdtemp(prefix="sme2-fixture-")))
    tiny = registry.get("tiny_seg")
    fp32, int8 = (exporter.export_variant(tiny, d, "small", root) for d in ("fp32", "int8"))
    host = inventory.resolve("host.sme2-off", root)
    run = session.run_session(
        root, fp32, host, session.Measurement(threads=1, iterations=3, warmup=1, binary=build_runner(root))
    )
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    for name in FILES:
        shutil.copy2(run.run_dir / name, OUT / name)
    traced = json.loads((OUT / "etdump.json").read_text())
    traced["etdump"] = "etdump.etdp"  # was the absolute path of the staging folder
    (OUT / "etdump.json").write_text(json.dumps(traced, indent=2) + "\n")
    (HERE / "tiny_seg-int8").mkdir(exist_ok=True)
    shutil.copy2(int8.folder / "program_map.json", HERE / "tiny_seg-int8" / "program_map.json")
    shutil.rmtree(root.path, ignore_errors=True)
    print(f"wrote {OUT} ({sum(p.stat().st_size for p in OUT.iterdir()) // 1024} KB)")


if __name__ == "__main__":
    main()
