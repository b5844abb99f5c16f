"""bench/paper.py end to end on headrace (a tiny N), and its handling of peers that are not
installed."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from command_lines import run_bench

pytestmark = pytest.mark.integration  # bench/paper.py as a process

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_quick_headrace_run_writes_sane_results(tmp_path):
    out = tmp_path / "out"
    run = run_bench(
        "paper.py",
        "--quick",
        "--systems",
        "headrace",
        "--out",
        str(out),
        "--tmp-dir",
        str(tmp_path),
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads((out / "paper.json").read_text())
    assert results["meta"]["messages"] == 2000
    assert results["meta"]["failed"] == {}
    rows = {(r["system"], r["client"], r["test"], r["batch"]): r for r in results["rows"]}
    for client in ("confluent-kafka", "headrace Producer"):
        for batch in (1, 50):
            assert ("headrace", client, "produce", batch) in rows
    for client in ("confluent-kafka", "headrace Consumer"):
        assert ("headrace", client, "consume", None) in rows
    for r in results["rows"]:
        assert r["messages"] == 2000
        assert r["seconds"] > 0 and r["msgs_per_s"] > 0
        assert r["broker_cpu_pct"] >= 0 and r["client_cpu_pct"] >= 0
        assert r["limited_by"]
        assert r["marks"] and r["marks"] == sorted(r["marks"])
        assert r["setting"]
    # A stored 200-byte message costs the record's few bytes plus its share of a batch header.
    one = rows[("headrace", "headrace Producer", "produce", 1)]
    fifty = rows[("headrace", "headrace Producer", "produce", 50)]
    assert 0 < fifty["log_overhead_bytes_per_msg"] < one["log_overhead_bytes_per_msg"] < 100
    assert fifty["log_overhead_bytes_per_msg"] < 15
    assert "200-byte messages" in run.stdout
    assert all(Path(p).exists() for p in results["figures"])
    assert not list(tmp_path.glob("paper-bench-*")), "the temporary directory was left behind"


def test_missing_peers_are_skipped_with_the_setup_hint(tmp_path, monkeypatch, capsys):
    sys.path[:0] = [str(ROOT / "bench")]
    try:
        import paper
        import paper_peers
    finally:
        del sys.path[0]
    monkeypatch.setattr(paper_peers, "RABBITMQ_SERVER", tmp_path / "no-rabbitmq-server")
    monkeypatch.setattr(paper_peers, "ACTIVEMQ_HOME", tmp_path / "no-activemq")
    args = SimpleNamespace(
        messages=10,
        systems=["rabbitmq", "activemq"],
        out=str(tmp_path),
        json=None,
        ceiling_server=str(tmp_path / "none.py"),
        client_timeout=10,
    )
    results = paper.run(args, tmp_path)
    printed = capsys.readouterr().out
    assert "rabbitmq-server not installed: run deploy/setup.sh --peers" in printed
    assert "activemq not installed: run deploy/setup.sh --peers" in printed
    assert set(results["meta"]["skipped"]) >= {"rabbitmq", "activemq"}
    assert results["rows"] == []
    assert json.loads((tmp_path / "paper.json").read_text())["meta"]["skipped"]
