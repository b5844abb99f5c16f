"""ElectLeaders: preferred (0) and unclean (1) leader elections asked by an admin client,
decided and written by the controller on its thread, as Kafka's controller does
(``KafkaController.onReplicaElection``).

    >>> elect(PartitionState(2, 4, (1, 2), 1), [1, 2], {1, 2}, 3, PREFERRED)
    (PartitionState(leader=1, leader_epoch=5, isr=(1, 2), controller_epoch=3), 0)

Kafka's answers per partition: ELECTION_NOT_NEEDED when the preferred replica leads already
(preferred) or a live leader leads (unclean); PREFERRED_LEADER_NOT_AVAILABLE when the first
replica is not live or not in sync; ELIGIBLE_LEADERS_NOT_AVAILABLE when no live replica can
take an offline partition; UNKNOWN_TOPIC_OR_PARTITION for a partition that does not exist.
An unclean election takes a live in-sync replica if there is one, else the first live
replica, which alone is then in sync (it may lack acknowledged records: that is what unclean
means).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from . import election
from .protocol.errors import (
    NONE,
    ElectionNotNeededError,
    EligibleLeadersNotAvailableError,
    NotControllerError,
    PreferredLeaderNotAvailableError,
    UnknownTopicOrPartitionError,
)
from .protocol.zookeeper import PartitionState

PREFERRED, UNCLEAN = 0, 1
Partition = tuple[str, int]


def elect(
    state: PartitionState | None,
    replicas: Sequence[int],
    live: Collection[int],
    controller_epoch: int,
    election_type: int,
) -> tuple[PartitionState | None, int]:
    """(the state to write or None, the partition's error code) for one election."""
    if election_type == PREFERRED:
        if state is not None and replicas and state.leader == replicas[0]:
            return None, ElectionNotNeededError.code
        new = state and election.preferred_leader(state, replicas, live, controller_epoch)
        return (new, NONE) if new else (None, PreferredLeaderNotAvailableError.code)
    if state is not None and state.leader in live:
        return None, ElectionNotNeededError.code
    offline = state or PartitionState(election.NO_LEADER, -1, (), controller_epoch)
    new = election.on_broker_start(offline, replicas, live, controller_epoch, unclean=True)
    return (new, NONE) if new else (None, EligibleLeadersNotAvailableError.code)


def run_elections(
    controller, partitions: list[Partition] | None, election_type: int
) -> tuple[dict[Partition, int], dict[Partition, int]]:
    """On the controller thread: elect each partition (None: every partition) and write the
    new states; each partition's error code, and the leader of each one elected.  Partitions
    whose write failed answer NOT_CONTROLLER (the controller moved, or the node kept changing
    under it)."""
    if not controller.active:
        raise NotControllerError(f"broker {controller.broker_id} is not the controller")
    live = controller._live()
    wanted = controller._all_partitions() if partitions is None else partitions
    codes: dict[Partition, int] = {}
    known = []
    for key in wanted:
        if controller.placements.get(key[0], {}).get(key[1]) is None:
            codes[key] = UnknownTopicOrPartitionError.code
        else:
            known.append(key)

    leaders: dict[Partition, int] = {}

    def decide(key, state, replicas):
        new, codes[key] = elect(state, replicas, live, controller.epoch, election_type)
        if new is not None:
            leaders[key] = new.leader
        return new

    for key in controller._transition(known, decide):
        codes[key] = NotControllerError.code
    return codes, {key: leader for key, leader in leaders.items() if codes[key] == NONE}
