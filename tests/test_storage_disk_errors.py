"""A full disk: appends fail with KAFKA_STORAGE_ERROR, write nothing, and lose nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from storage_helpers import batch_for, values_by_seq

from broker.log import LogConfig, PartitionLog

pytestmark = pytest.mark.integration  # a child process on a full disk

# RLIMIT_FSIZE makes writes past the limit short or EFBIG, as a full disk would.
CHILD = textwrap.dedent(
    """
    import json, resource, signal, sys
    sys.path.insert(0, {tests!r})
    from broker.log import LogConfig, PartitionLog
    from broker.protocol.errors import KafkaStorageError
    from storage_helpers import batch_for

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))
    plog = PartitionLog.open(__import__("pathlib").Path(sys.argv[1]), LogConfig())
    acked, errors = [], []
    for seq in range(1000):
        try:
            result = plog.append(batch_for(seq)[0])
            acked.append([seq, result.base_offset])
        except KafkaStorageError as exc:
            errors.append([seq, exc.code, str(exc), plog.size])
            if len(errors) == 5:
                break
    # A batch that still fits is accepted after the errors: the log is not wedged.
    room = 50_000 - plog.size
    seq = next((s for s in range(2000, 3000) if len(batch_for(s)[0]) < room), None)
    if seq is not None:
        acked.append([seq, plog.append(batch_for(seq)[0]).base_offset])
    plog.close()
    print(json.dumps({{"acked": acked, "errors": errors, "end": plog.log_end_offset}}))
    """
)


def test_appends_on_a_full_disk_fail_cleanly_and_lose_nothing(tmp_path):
    directory = tmp_path / "events-0"
    result = subprocess.run(
        [sys.executable, "-c", CHILD.format(tests=os.path.dirname(__file__)), str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    acked, errors = report["acked"], report["errors"]
    assert len(acked) > 50 and len(errors) == 5
    for _seq, code, message, size in errors:
        assert code == 56 and "nothing was written" in message
        assert size <= 50_000
    # Every acknowledged batch is intact, and nothing half-written follows the last one.
    plog = PartitionLog.open(directory, LogConfig(), recover=True, recovery_point=0)
    got = values_by_seq(plog)
    assert {seq for seq, _ in acked} <= set(got)
    assert all(got[seq] == batch_for(seq)[1] for seq in got)
    assert plog.recovery_cut_bytes == 0
    assert acked[-1][0] >= 2000, "no append was accepted after the disk errors"
    end = plog.log_end_offset
    assert plog.append(batch_for(5000)[0]).base_offset == end
