"""Bad input to the headrace command ends with one clear line and a non-zero exit status,
never a traceback: bootstrap servers without a port, broken .properties files, a damaged
cluster.json, path characters in group names, a non-positive --interval, and ZooKeeper
errors or a malformed plan during a load."""

from __future__ import annotations

import subprocess

import pytest
from command_lines import HEADRACE, group_args
from kazoo.client import KazooClient
from kazoo.security import make_acl

from broker.protocol import zookeeper as layout

pytestmark = pytest.mark.integration  # the headrace command as a process


def run(*args: str, cwd=None, stdin: str | None = None) -> tuple[int, str]:
    feed = {"stdin": subprocess.DEVNULL} if stdin is None else {"input": stdin}
    result = subprocess.run(
        [*HEADRACE, *args], capture_output=True, text=True, cwd=cwd, check=False, timeout=60, **feed
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stderr.strip()


def run_load(zookeeper: str, warehouse: str, *options: str) -> tuple[int, str]:
    """``headrace load`` of topic ``t`` for group ``g`` into ``warehouse``."""
    return run(*group_args("load", zookeeper, "t", "g", "--to", warehouse, *options))


@pytest.mark.parametrize(
    "command",
    [
        ["topics", "list"],
        ["produce", "--topic", "t"],
        ["consume", "--topic", "t"],
        ["groups", "list"],
    ],
)
def test_a_bootstrap_server_without_a_port_is_refused(command):
    status, err = run(*command, "--bootstrap-server", "localhost")
    assert status == 2
    assert err == (
        f"headrace {command[0]}: --bootstrap-server: bootstrap server 'localhost' is "
        "not host:port (give host:port, e.g. localhost:9092)"
    )


def test_a_bootstrap_port_out_of_range_is_refused():
    status, err = run("topics", "list", "--bootstrap-server", "localhost:70000")
    expected = "headrace topics: --bootstrap-server localhost:70000: the port must be 1-65535"
    assert (status, err) == (2, expected)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"broker.id=1\nlog.dirs=/tmp/x\\u12G4\n", 'malformed \\uxxxx escape "\\u12G4"'),
        (b"broker.id=1\nlog.dirs=/tmp/\\u41", 'malformed \\uxxxx escape "\\u41"'),
        (b"broker.id=1\n# caf\xe9\n", "is not UTF-8 text: byte 0xe9 on line 2"),
    ],
)
def test_a_broken_properties_file_gets_one_line(tmp_path, content, message):
    path = tmp_path / "server.properties"
    path.write_bytes(content)
    status, err = run("broker", "--config", str(path))
    assert status == 2 and len(err.splitlines()) == 1 and message in err, err


@pytest.mark.parametrize(
    "state", ['{"pids": [1, ', "[]", '{"pids": ["1"]}', '{"pids": [], "brokers": [{"id": 1}]}']
)
@pytest.mark.parametrize("action", ["up", "down"])
def test_a_damaged_cluster_state_file_is_reported_not_acted_on(tmp_path, state, action):
    (tmp_path / "cluster.json").write_text(state)
    status, err = run("cluster", action, "--dir", str(tmp_path), "--zookeeper", "127.0.0.1:1")
    assert status == 1 and len(err.splitlines()) == 1
    assert str(tmp_path / "cluster.json") in err and "remove the file" in err
    assert (tmp_path / "cluster.json").read_text() == state  # left for a person to look at


@pytest.mark.parametrize("group", ["a/b", "..", ".", "", "tab\there"])
@pytest.mark.parametrize(
    "command",
    [
        ["consume", "--topic", "t", "--zookeeper", "127.0.0.1:1", "--group"],
        ["load", "--zookeeper", "127.0.0.1:1", "--topic", "t", "--to", "/nonexistent", "--group"],
        ["groups", "--zookeeper", "127.0.0.1:1", "describe"],
    ],
)
def test_a_group_name_with_path_characters_is_refused(command, group):
    status, err = run(*command, group)
    assert status == 2 and len(err.splitlines()) == 1
    assert err.startswith(f"headrace {command[0]}: group name {group!r}")


@pytest.mark.parametrize("interval", ["0", "-5", "nan"])
def test_a_follow_interval_must_be_positive(interval):
    status, err = run_load("127.0.0.1:1", "/nonexistent", "--follow", "--interval", interval)
    assert status == 2
    assert err.startswith("headrace load: --interval must be a positive number of seconds")


@pytest.fixture
def zk(zk_chroot):
    client = KazooClient(hosts=zk_chroot, timeout=10)
    client.start(timeout=15)
    client.create(
        layout.topic_path("t"),
        layout.encode_topic(layout.TopicPlacement({0: [1]})),
        makepath=True,
    )
    yield client
    client.stop()
    client.close()


@pytest.mark.parametrize(
    "plan", [b"not json", b"\xff\xfe", b"[1, 2]", b'{"partitions": {"t/0": {"end": "x"}}}']
)
def test_a_malformed_load_plan_is_reported(zk, zk_chroot, tmp_path, plan):
    zk.create(layout.plan_path("g"), plan, makepath=True)
    status, err = run_load(zk_chroot, str(tmp_path / "warehouse"))
    assert status == 1
    assert "the loader plan at /consumers/g/loader/plan in ZooKeeper is malformed" in err


def test_a_zookeeper_error_during_a_load_is_reported(zk, zk_chroot, tmp_path):
    # Nobody may read the plan node: the loader's read fails with NoAuth.
    zk.ensure_path(layout.loader_path("g"))
    zk.create(
        layout.plan_path("g"),
        layout.encode_plan({"created_ms": 0, "partitions": {}}),
        acl=[make_acl("world", "anyone", write=True, delete=True, admin=True)],
    )
    status, err = run_load(zk_chroot, str(tmp_path / "warehouse"))
    assert status == 1
    assert f"headrace load: ZooKeeper at {zk_chroot} failed the load: NoAuthError" in err


ZOOKEEPER_COMMANDS = [
    ["consume", "--topic", "t"],
    ["consume", "--topic", "t", "--group", "g"],
    ["produce", "--topic", "t"],
    ["groups", "list"],
]


@pytest.mark.parametrize("command", ZOOKEEPER_COMMANDS)
def test_a_malformed_zookeeper_address_gets_one_line(command):
    status, err = run(*command, "--zookeeper", "127.0.0.1:2181:x")
    assert status == 2
    assert err.startswith(f"headrace {command[0]}: --zookeeper 127.0.0.1:2181:x: ")


def test_an_unreachable_zookeeper_gets_one_line():
    """(It waits out the client's connection timeout; every command ends the same way.)"""
    status, err = run("produce", "--topic", "t", "--zookeeper", "127.0.0.1:1", stdin="a line\n")
    assert status == 2
    assert err.splitlines()[-1].startswith(
        "headrace produce: cannot reach ZooKeeper at 127.0.0.1:1"
    )
