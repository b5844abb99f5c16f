"""kill -9 of a process appending in a loop: every offset it was told about survives."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from storage_helpers import values_by_seq

from broker.log import LogManager

pytestmark = pytest.mark.integration  # an appending child process, killed

# The child appends deterministic batches (tests/storage_helpers.batch_for) and prints
# "<seq> <base offset> <last offset>" after each append returns, flushing stdout each time.
CHILD = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from broker.log import LogConfig, LogManager
    from storage_helpers import batch_for

    log_dir, first_seq, flush_messages = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    config = LogConfig(segment_bytes=64 * 1024, index_interval_bytes=1024,
                       flush_interval_messages=flush_messages)
    manager = LogManager([log_dir], config, recovery_checkpoint_interval_ms=0)
    manager.startup()
    plog = manager.get_or_create_log("events", 0)
    seq = first_seq
    while True:
        result = plog.append(batch_for(seq)[0])
        sys.stdout.write("%d %d %d\\n" % (seq, result.base_offset, result.last_offset))
        sys.stdout.flush()
        if seq % 50 == 0:
            manager.tick()
        seq += 1
    """
)


def run_and_kill(
    log_dir, first_seq: int, flush_messages: int, reports: int
) -> list[tuple[int, int, int]]:
    """Start the child, read ``reports`` acknowledgements, kill -9 it; return them all."""
    script = CHILD.format(tests=os.path.dirname(__file__))
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(log_dir), str(first_seq), str(flush_messages)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    acked = []
    deadline = time.monotonic() + 60
    try:
        while len(acked) < reports and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                raise AssertionError(f"child died: {child.stderr.read().decode()}")
            acked.append(tuple(int(x) for x in line.split()))
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    # Lines written before the kill but not yet read were acknowledged too.
    for line in child.stdout.read().splitlines():
        parts = line.split()
        if len(parts) == 3:
            acked.append(tuple(int(x) for x in parts))
    assert len(acked) >= reports
    return acked


@pytest.mark.parametrize("flush_messages", [2**63 - 1, 7])
def test_every_acknowledged_batch_survives_kill_9(tmp_path, flush_messages):
    from storage_helpers import batch_for

    log_dir = tmp_path / "logs"
    acked_all = []
    next_seq = 0
    for round_number, reports in enumerate((400, 900, 250)):
        acked = run_and_kill(log_dir, next_seq, flush_messages, reports)
        acked_all += acked
        next_seq = acked[-1][0] + 1000  # leave a gap so each round's batches are distinct

        manager = LogManager([log_dir])
        manager.startup()
        plog = manager.get_log("events", 0)
        assert manager.recovered_unclean
        present = values_by_seq(plog)
        for seq, _base, _last in acked_all:
            assert seq in present, f"round {round_number}: acknowledged batch {seq} is gone"
            assert present[seq] == batch_for(seq)[1], f"batch {seq} came back different"
        by_offset = {}
        from broker.protocol.records import decode_batch, split_batches

        for seq, base, last in acked_all:
            data = plog.read(base, 1)
            header = next(split_batches(data))[1]
            assert (header.base_offset, header.last_offset) == (base, last)
            by_offset[base] = seq
            assert decode_batch(data).records[0].key == b"seq-%d" % seq
        # Unacknowledged batches may be present (written, then killed before reporting)
        # but only whole, and only after the acknowledged ones.
        assert len(present) - len(acked_all) <= round_number + 1
        manager.shutdown()
