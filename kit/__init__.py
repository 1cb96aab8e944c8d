"""The SME2 profiling kit: plain Python, no Dagster.

Data flow: models (registry) -> export -> runner (C++ + build) -> targets (devices, transports)
-> trace (ETDump ingest) -> stats -> categories -> analysis -> warehouse -> report. `kit.cli` sits on top.
"""

__version__ = "0.1.0"
