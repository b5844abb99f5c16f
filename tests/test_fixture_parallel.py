"""The suite under pytest-xdist: modules handed out heaviest first, and the conftest's
integration marking and its refusal of processes and sockets in pure tests kept in workers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import heaviest_modules_first

TESTS = Path(__file__).parent


class FakeItem:
    def __init__(self, nodeid: str, *markers: str):
        self.nodeid = nodeid
        self.markers = set(markers)

    def get_closest_marker(self, name):
        return name if name in self.markers else None


def test_heaviest_modules_go_first_whole_and_in_their_own_order():
    items = [
        FakeItem("tests/test_a.py::pure1"),
        FakeItem("tests/test_b.py::one", "integration"),
        FakeItem("tests/test_a.py::pure2"),
        FakeItem("tests/test_c.py::x", "integration"),
        FakeItem("tests/test_c.py::y[1]", "integration", "slow"),
        FakeItem("tests/test_d.py::pure"),
        FakeItem("tests/test_b.py::two", "integration"),
    ]
    ordered = [item.nodeid for item in heaviest_modules_first(items)]
    assert ordered == [
        "tests/test_c.py::x",  # 1 + (1 + 5)
        "tests/test_c.py::y[1]",
        "tests/test_b.py::one",  # 2
        "tests/test_b.py::two",
        "tests/test_a.py::pure1",  # pure modules last, in collection order
        "tests/test_a.py::pure2",
        "tests/test_d.py::pure",
    ]


SAMPLE = '''
import socket

import pytest


@pytest.fixture
def zookeeper():
    """Stands in for the conftest's ZooKeeper: only its name matters to the marking."""
    return None


def connect_somewhere():
    with socket.socket() as s:
        s.settimeout(1)
        s.connect_ex(("127.0.0.1", 9))


def test_pure_that_connects():
    connect_somewhere()


@pytest.mark.integration
def test_marked_that_connects():
    connect_somewhere()


def test_marked_by_its_fixture(zookeeper):
    connect_somewhere()


def test_pure():
    assert sorted({3, 1, 2}) == [1, 2, 3]  # pure work: no socket, no process
'''


def run_pytest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    shutil.copy(TESTS / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    (tmp_path / "test_other.py").write_text("def test_other():\n    assert int('7') * 6 == 42\n")
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\naddopts = --strict-markers\nmarkers =\n    integration: processes\n"
        "    slow: long\n"
    )
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(TESTS.parent)},
    )


@pytest.mark.integration
def test_workers_mark_integration_and_refuse_sockets_in_pure_tests(tmp_path):
    result = run_pytest(tmp_path, "-n", "2", "--dist", "loadfile", "--no-loadscope-reorder")
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert "FAILED test_sample.py::test_pure_that_connects" in out
    assert "a socket connect in a test not marked integration" in out
    for passed in ("test_marked_that_connects", "test_marked_by_its_fixture", "test_pure"):
        assert f"PASSED test_sample.py::{passed}" in out
    assert "1 failed, 4 passed" in out


@pytest.mark.integration
def test_workers_select_by_the_integration_mark(tmp_path):
    result = run_pytest(tmp_path, "-n", "2", "--dist", "loadfile", "-m", "not integration")
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert "FAILED test_sample.py::test_pure_that_connects" in out
    assert "PASSED test_sample.py::test_pure" in out and "PASSED test_other.py::test_other" in out
    assert "test_marked" not in out  # both deselected, the one marked by its fixture too
    assert "1 failed, 2 passed" in out
