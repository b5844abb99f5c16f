"""bench/mirror_bench.py end to end, tiny: the mirror and the baseline both timed from the
target's first message to its last, and the ratio lands in the JSON file (never judged
here: speed is the bench's business)."""

from __future__ import annotations

import json

import pytest
from command_lines import run_bench

pytestmark = pytest.mark.integration  # the script runs as a process


def test_a_tiny_run_reports_the_mirror_against_the_baseline(tmp_path):
    out = tmp_path / "mirror.json"
    run = run_bench("mirror_bench.py", "--count", "3000", "--reps", "1", "--json", str(out))
    assert run.returncode in (0, 1), run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["count"] == 3000 and results["baseline"] > 0
    assert results["setups"]["1x1"]["ratio"] > 0
    assert "rep 0: baseline" in run.stdout and "start" in run.stdout
