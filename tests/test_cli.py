"""The headrace command: the storage demo and dump-log."""

from __future__ import annotations

import subprocess
import sys

from headrace.cli import main


def test_demo_appends_reads_crashes_and_recovers(tmp_path, capsys):
    assert main(["--log-level", "WARNING", "demo", "--log-dir", str(tmp_path), "--messages", "3000"]) == 0
    out = capsys.readouterr().out
    assert "appended 3,000 log lines" in out and "read back 3,000" in out and "demo passed" in out


def test_dump_log_lists_batches_and_flags_corruption(tmp_path, capsys):
    main(["--log-level", "WARNING", "demo", "--log-dir", str(tmp_path), "--messages", "1500"])
    capsys.readouterr()
    partition = tmp_path / "access-log-0"
    assert main(["dump-log", str(partition), "--print-data"]) == 0
    out = capsys.readouterr().out
    assert "baseOffset 0 lastOffset 499 count 500" in out and "valid" in out
    assert "key b'host-0'" in out
    segment = sorted(partition.glob("*.log"))[0]
    data = bytearray(segment.read_bytes())
    data[100] ^= 0xFF
    segment.write_bytes(bytes(data))
    assert main(["dump-log", str(segment)]) == 1
    assert "INVALID" in capsys.readouterr().out


def test_console_script_reports_errors_cleanly(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "headrace.cli", "dump-log", str(tmp_path / "nope.log")],
        capture_output=True, text=True,
    )
    assert result.returncode == 2
    assert "No such file" in result.stderr and "Traceback" not in result.stderr
