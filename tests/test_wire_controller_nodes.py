"""The controller's ZooKeeper nodes (broker/protocol/zookeeper.py): ``/controller``,
``/controller_epoch`` and each partition's ``state``, in Kafka's JSON; malformed data refused
with MalformedNodeError.  Pure: no ZooKeeper."""

from __future__ import annotations

import json

import pytest

from broker.protocol import zookeeper as layout
from broker.protocol.zookeeper import ControllerRegistration, MalformedNodeError, PartitionState


def test_controller_paths_are_kafkas():
    assert layout.CONTROLLER == "/controller"
    assert layout.CONTROLLER_EPOCH == "/controller_epoch"
    assert layout.partitions_path("t") == "/brokers/topics/t/partitions"
    assert layout.partition_path("t", 3) == "/brokers/topics/t/partitions/3"
    assert layout.partition_state_path("t", 3) == "/brokers/topics/t/partitions/3/state"


def test_partition_state_is_kafkas_json_and_round_trips():
    state = PartitionState(leader=2, leader_epoch=5, isr=(2, 3, 1), controller_epoch=7)
    data = layout.encode_partition_state(state)
    assert json.loads(data) == {
        "controller_epoch": 7,
        "leader": 2,
        "version": 1,
        "leader_epoch": 5,
        "isr": [2, 3, 1],
    }
    assert layout.decode_partition_state(data) == state


def test_a_state_written_by_kafka_is_read():
    data = b'{"controller_epoch":1,"leader":0,"version":1,"leader_epoch":0,"isr":[0,1]}'
    assert layout.decode_partition_state(data) == PartitionState(0, 0, (0, 1), 1)


def test_an_offline_state_keeps_its_last_isr_member():
    state = PartitionState(leader=-1, leader_epoch=3, isr=(1,), controller_epoch=2)
    assert layout.decode_partition_state(layout.encode_partition_state(state)) == state


def test_controller_registration_is_kafkas_json_and_round_trips():
    reg = ControllerRegistration(broker_id=3, timestamp_ms=1700000000123)
    data = layout.encode_controller(reg)
    assert json.loads(data) == {"version": 1, "brokerid": 3, "timestamp": "1700000000123"}
    assert layout.decode_controller(data) == reg
    kafka = b'{"version":1,"brokerid":0,"timestamp":"1564000000000"}'
    assert layout.decode_controller(kafka) == ControllerRegistration(0, 1564000000000)


def test_controller_epoch_is_decimal_text():
    assert layout.encode_controller_epoch(12) == b"12"
    assert layout.decode_controller_epoch(b"12") == 12
    assert layout.decode_controller_epoch(b" 4\n") == 4


@pytest.mark.parametrize(
    "decode, data",
    [
        (layout.decode_partition_state, b"not json"),
        (layout.decode_partition_state, b'{"leader":1,"leader_epoch":0,"controller_epoch":1}'),
        (
            layout.decode_partition_state,
            b'{"controller_epoch":1,"leader":"1","leader_epoch":0,"isr":[1]}',
        ),
        (
            layout.decode_partition_state,
            b'{"controller_epoch":1,"leader":1,"leader_epoch":0,"isr":["1"]}',
        ),
        (
            layout.decode_partition_state,
            b'{"controller_epoch":1,"leader":1,"leader_epoch":0,"isr":3}',
        ),
        (layout.decode_controller, b'{"version":1,"timestamp":"1"}'),
        (layout.decode_controller, b'{"version":1,"brokerid":"2"}'),
        (layout.decode_controller, b"\xff"),
        (layout.decode_controller_epoch, b"seven"),
        (layout.decode_controller_epoch, b"-1"),
        (layout.decode_controller_epoch, b"\xff"),
    ],
)
def test_malformed_controller_nodes_are_refused(decode, data):
    with pytest.raises(MalformedNodeError) as caught:
        decode(data, "/some/path")
    assert "/some/path" in str(caught.value)
