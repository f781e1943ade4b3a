"""Benchmarks: each prints its JSON report and, with ``--out``, writes it beside RESULTS.md."""
from __future__ import annotations

import json
from pathlib import Path


def publish(report: dict, out: str | None) -> dict:
    """Print the report as JSON and, when ``out`` is given, write it there too; returns it."""
    text = json.dumps(report, indent=1)
    print(text)
    if out:
        Path(out).write_text(text + "\n")
    return report
