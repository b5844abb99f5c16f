"""The controller's decisions (broker/election.py), pure: Kafka's replica placement and each
event's next leader, leader epoch and ISR.  No ZooKeeper."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from broker.election import (
    InvalidReplicationFactor,
    assign_replicas,
    brokers_changed,
    controlled_shutdown,
    new_partition,
    on_broker_failure,
    on_broker_start,
    preferred_leader,
)
from broker.protocol.zookeeper import PartitionState as S


def test_placement_matches_kafkas_admin_utils_for_a_fixed_start():
    # kafka AdminRackAwareTest / AdminTest testReplicaAssignment: 5 brokers, 10 partitions,
    # replication factor 3, fixed start index 0.
    assert assign_replicas(10, 3, [0, 1, 2, 3, 4], start_index=0) == {
        0: [0, 1, 2],
        1: [1, 2, 3],
        2: [2, 3, 4],
        3: [3, 4, 0],
        4: [4, 0, 1],
        5: [0, 2, 3],
        6: [1, 3, 4],
        7: [2, 4, 0],
        8: [3, 0, 1],
        9: [4, 1, 2],
    }


def test_placement_sorts_the_brokers_and_starts_where_asked():
    assert assign_replicas(3, 1, [12, 10, 11], start_index=1) == {0: [11], 1: [12], 2: [10]}
    assert assign_replicas(2, 2, [1, 2, 3], start_index=0, start_partition=3) == {
        3: [1, 3],
        4: [2, 1],
    }


def test_a_random_placement_spreads_leaders_and_never_repeats_a_broker():
    placement = assign_replicas(30, 3, [1, 2, 3, 4, 5, 6], rng=random.Random(7))
    assert all(len(set(r)) == 3 for r in placement.values())
    assert set(Counter(r[0] for r in placement.values()).values()) == {5}
    assert set(Counter(b for r in placement.values() for b in r).values()) == {15}


@pytest.mark.parametrize(
    "factor, message",
    [
        (0, "Replication factor must be larger than 0."),
        (-2, "Replication factor must be larger than 0."),
        (4, "Replication factor: 4 larger than available brokers: 3."),
    ],
)
def test_a_replication_factor_the_brokers_cannot_meet_is_refused(factor, message):
    with pytest.raises(InvalidReplicationFactor) as caught:
        assign_replicas(2, factor, [1, 2, 3])
    assert str(caught.value) == message


def test_a_new_partition_is_led_by_its_first_live_replica():
    assert new_partition([2, 3, 1], {1, 2, 3}, 4) == S(2, 0, (2, 3, 1), 4)
    assert new_partition([2, 3, 1], {1, 3}, 4) == S(3, 0, (3, 1), 4)
    assert new_partition([2], {1, 3}, 4) is None


def test_a_failed_leader_is_replaced_by_the_first_live_isr_member_in_assignment_order():
    state = S(1, 3, (1, 3, 2), 1)
    assert on_broker_failure(state, [1, 2, 3], {1}, {2, 3}, 2) == S(2, 4, (3, 2), 2)


def test_an_out_of_sync_replica_does_not_become_leader():
    state = S(1, 3, (1, 3), 1)
    assert on_broker_failure(state, [1, 2, 3], {1}, {2, 3}, 2) == S(3, 4, (3,), 2)


def test_with_no_live_isr_member_the_partition_goes_offline_keeping_its_last_member():
    state = S(1, 3, (1,), 1)
    assert on_broker_failure(state, [1, 2, 3], {1}, {2, 3}, 2) == S(-1, 4, (1,), 2)
    # already offline: another failure changes nothing
    assert on_broker_failure(S(-1, 4, (1,), 2), [1, 2, 3], {2}, {3}, 2) is None


def test_unclean_election_takes_a_live_out_of_sync_replica_alone():
    state = S(1, 3, (1,), 1)
    assert on_broker_failure(state, [1, 2, 3], {1}, {2, 3}, 2, unclean=True) == S(2, 4, (2,), 2)


def test_a_failed_follower_leaves_the_isr_one_epoch_on():
    state = S(1, 3, (1, 2, 3), 1)
    assert on_broker_failure(state, [1, 2, 3], {3}, {1, 2}, 2) == S(1, 4, (1, 2), 2)
    assert on_broker_failure(S(1, 3, (1, 2), 1), [1, 2, 3], {3}, {1, 2}, 2) is None


def test_the_last_isr_member_returning_leads_its_offline_partition_again():
    offline = S(-1, 4, (1,), 2)
    assert on_broker_start(offline, [1, 2, 3], {1, 2, 3}, 3) == S(1, 5, (1,), 3)
    assert on_broker_start(offline, [1, 2, 3], {2, 3}, 3) is None
    assert on_broker_start(offline, [1, 2, 3], {2, 3}, 3, unclean=True) == S(2, 5, (2,), 3)
    assert on_broker_start(S(2, 4, (2, 1), 2), [1, 2], {1, 2}, 3) is None


def test_a_bounced_only_replica_gets_its_leadership_back_two_epochs_on():
    state = S(1, 0, (1,), 1)
    offline = on_broker_failure(state, [1], {1}, {1}, 1)
    assert offline == S(-1, 1, (1,), 1)
    assert on_broker_start(offline, [1], {1}, 1) == S(1, 2, (1,), 1)


def test_preferred_leader_returns_when_alive_and_in_sync():
    assert preferred_leader(S(2, 5, (2, 1), 1), [1, 2], {1, 2}, 3) == S(1, 6, (2, 1), 3)
    assert preferred_leader(S(2, 5, (2,), 1), [1, 2], {1, 2}, 3) is None  # not in sync
    assert preferred_leader(S(2, 5, (2, 1), 1), [1, 2], {2}, 3) is None  # not alive
    assert preferred_leader(S(1, 5, (2, 1), 1), [1, 2], {1, 2}, 3) is None  # leads already


def test_controlled_shutdown_moves_leadership_and_leaves_isrs():
    assert controlled_shutdown(S(1, 2, (1, 2, 3), 1), [1, 2, 3], 1, {1, 2, 3}, 4) == (
        S(2, 3, (2, 3), 4),
        True,
    )
    assert controlled_shutdown(S(2, 2, (2, 1), 1), [2, 1], 1, {1, 2}, 4) == (
        S(2, 3, (2,), 4),
        True,
    )
    # the only in-sync replica cannot hand its leadership over
    assert controlled_shutdown(S(1, 2, (1,), 1), [1, 2], 1, {1, 2}, 4) == (None, False)
    assert controlled_shutdown(S(2, 2, (2,), 1), [2, 1], 1, {1, 2}, 4) == (None, True)


def test_a_changed_broker_epoch_is_a_failure_and_a_start():
    assert brokers_changed({1: 10, 2: 11}, {1: 10, 2: 11}) == (set(), set())
    assert brokers_changed({1: 10, 2: 11}, {1: 10, 3: 12}) == ({2}, {3})
    assert brokers_changed({1: 10, 2: 11}, {1: 10, 2: 15}) == ({2}, {2})
