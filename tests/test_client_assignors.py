"""The range and roundrobin assignors give Kafka's Java assignors' results, and every
partition of a subscribed topic to exactly one subscribed member."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumers.assignors import Member, assignor, member_order, range_assign, roundrobin_assign


def test_range_gives_the_first_members_one_more_per_topic():
    members = {"c0": Member(["t0", "t1"]), "c1": Member(["t0", "t1"])}
    assert range_assign(members, {"t0": 3, "t1": 3}) == {
        "c0": {"t0": [0, 1], "t1": [0, 1]},
        "c1": {"t0": [2], "t1": [2]},
    }


def test_range_splits_each_topic_among_its_own_subscribers():
    members = {"c0": Member(["t0"]), "c1": Member(["t0", "t1"]), "c2": Member(["t1"])}
    assert range_assign(members, {"t0": 4, "t1": 5}) == {
        "c0": {"t0": [0, 1]},
        "c1": {"t0": [2, 3], "t1": [0, 1, 2]},
        "c2": {"t1": [3, 4]},
    }


def test_range_leaves_extra_members_empty_and_skips_unknown_topics():
    members = {f"c{i}": Member(["t", "missing"]) for i in range(4)}
    assert range_assign(members, {"t": 2}) == {
        "c0": {"t": [0]},
        "c1": {"t": [1]},
        "c2": {},
        "c3": {},
    }


def test_static_members_come_first_by_instance_id():
    members = {"a": Member(["t"]), "z": Member(["t"], "i2"), "m": Member(["t"], "i1")}
    assert member_order(members) == ["m", "z", "a"]
    assert range_assign(members, {"t": 3}) == {"m": {"t": [0]}, "z": {"t": [1]}, "a": {"t": [2]}}


def test_roundrobin_deals_all_partitions_in_turn():
    members = {"c0": Member(["t0", "t1"]), "c1": Member(["t0", "t1"])}
    assert roundrobin_assign(members, {"t0": 3, "t1": 3}) == {
        "c0": {"t0": [0, 2], "t1": [1]},
        "c1": {"t0": [1], "t1": [0, 2]},
    }


def test_roundrobin_skips_members_not_subscribed():
    # Kafka's documented example: C0 [t0], C1 [t0, t1], C2 [t0, t1, t2]; 1, 2, 3 partitions
    members = {"c0": Member(["t0"]), "c1": Member(["t0", "t1"]), "c2": Member(["t0", "t1", "t2"])}
    assert roundrobin_assign(members, {"t0": 1, "t1": 2, "t2": 3}) == {
        "c0": {"t0": [0]},
        "c1": {"t1": [0]},
        "c2": {"t1": [1], "t2": [0, 1, 2]},
    }


def test_an_unknown_strategy_is_a_value_error():
    with pytest.raises(ValueError, match="sticky"):
        assignor("sticky")


groups = st.dictionaries(
    st.text("abcdef", min_size=1, max_size=3),
    st.tuples(
        st.lists(st.sampled_from(["t0", "t1", "t2"]), min_size=1, max_size=3, unique=True),
        st.one_of(st.none(), st.text("xyz", min_size=1, max_size=2)),
    ),
    min_size=1,
    max_size=6,
)
counts = st.fixed_dictionaries({"t0": st.integers(0, 12), "t1": st.integers(0, 5)})


@pytest.mark.parametrize("name", ["range", "roundrobin"])
@given(raw=groups, partitions=counts)
def test_every_subscribed_partition_goes_to_exactly_one_subscriber(name, raw, partitions):
    instance_ids = [i for _, i in raw.values() if i is not None]
    if len(instance_ids) != len(set(instance_ids)):
        return  # instance ids are unique in a group
    members = {m: Member(topics, instance) for m, (topics, instance) in raw.items()}
    result = assignor(name)(members, partitions)
    assert set(result) == set(members)
    for topic, count in partitions.items():
        subscribers = [m for m in members if topic in members[m].topics]
        owners = [(p, m) for m, topics in result.items() for p in topics.get(topic, []) if True]
        if not subscribers:
            assert owners == []
            continue
        assert sorted(p for p, _ in owners) == list(range(count))
        assert all(m in subscribers for _, m in owners)
        sizes = [len(result[m].get(topic, [])) for m in subscribers]
        if name == "range":  # balanced per topic
            assert max(sizes) - min(sizes) <= 1
