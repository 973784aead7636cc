"""Smoke test of the benchmarks: ``python -m bench --quick`` runs, prints its table and
writes a JSON file naming every benchmark, each of which ran (none "skipped"). No assertion
on any speed: CI machines vary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.suite import NAMES

REPO = Path(__file__).resolve().parent.parent


def test_bench_quick_runs_and_writes_every_benchmark(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=420,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    # the table: its header, a block per benchmark, the summary line
    assert "this box" in done.stdout and "alternative" in done.stdout
    for name in NAMES:
        assert f"\n{name}: " in done.stdout, name
    assert "targets met:" in done.stdout

    data = json.loads(out.read_text())
    assert set(data["benchmarks"]) == set(NAMES)
    for key in ("date", "platform", "cpu_model", "python"):
        assert data["machine"][key], key
    assert data["options"]["quick"] is True
    # every benchmark ran: a skipped one (a tool missing, a screen that did not start) is a
    # failure here, as an error is, and no row of the table says otherwise
    for name, bench in data["benchmarks"].items():
        assert bench["status"] == "ok", (name, bench["status"], bench["error"], bench["notes"])
        assert bench["figures"], name
        for figure in bench["figures"]:
            for key in ("key", "label", "value", "unit", "target_text", "met", "alt_value"):
                assert key in figure, (name, key)
            if figure["target_op"] is not None:
                assert isinstance(figure["met"], bool), figure["key"]
    assert "missed" in data["summary"]
    assert data["summary"]["skipped"] == [] and data["summary"]["errors"] == []
    assert "[SKIPPED]" not in done.stdout and "[ERROR]" not in done.stdout
