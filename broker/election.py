"""The controller's decisions, as pure functions: replica placement and, for each event, a
partition's next leader and in-sync replicas (Kafka's partition and replica state machines).

    >>> assign_replicas(4, 2, [1, 2, 3], start_index=0)
    {0: [1, 2], 1: [2, 3], 2: [3, 1], 3: [1, 3]}
    >>> on_broker_failure(PartitionState(1, 0, (1, 2), 1), [1, 2], {1}, {2}, 2)
    PartitionState(leader=2, leader_epoch=1, isr=(2,), controller_epoch=2)

Each function takes a partition's current state, its replicas in assignment order and the
live brokers, and returns the state to write (``None``: nothing to change).  A state with
leader -1 is offline; its ISR keeps the last member that was in sync, the only replica that
may lead it again unless ``unclean.leader.election.enable`` allows an out-of-sync one.  No
ZooKeeper, no clock: ``broker/controller.py`` runs these and writes what they return.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence

from .protocol.zookeeper import PartitionState

NO_LEADER = -1


class InvalidReplicationFactor(ValueError):
    """The replication factor cannot be met by the live brokers (Kafka's message)."""


def assign_replicas(
    partitions: int,
    replication_factor: int,
    brokers: Collection[int],
    start_index: int = -1,
    start_partition: int = 0,
    rng: random.Random | None = None,
) -> dict[int, list[int]]:
    """Kafka's rack-unaware replica assignment (``AdminUtils.assignReplicasToBrokers``): the
    first replica of partition p is broker ``(p + start) % n`` of the sorted brokers, the
    others follow at a shift that grows by one each time the partitions wrap around the
    brokers, so leaders and followers both spread evenly.  ``start_index`` -1 draws the start
    and the first shift at random, as Kafka does; a fixed one uses it for both."""
    if replication_factor <= 0:
        raise InvalidReplicationFactor("Replication factor must be larger than 0.")
    ordered = sorted(brokers)
    if replication_factor > len(ordered):
        raise InvalidReplicationFactor(
            f"Replication factor: {replication_factor} larger than available brokers: "
            f"{len(ordered)}."
        )
    n = len(ordered)
    draw = rng or random
    start = start_index if start_index >= 0 else draw.randrange(n)
    shift = start_index if start_index >= 0 else draw.randrange(n)
    assignment = {}
    for partition in range(max(0, start_partition), max(0, start_partition) + partitions):
        if partition > 0 and partition % n == 0:
            shift += 1
        first = (partition + start) % n
        replicas = [ordered[first]]
        for j in range(replication_factor - 1):
            replicas.append(ordered[(first + 1 + (shift + j) % (n - 1)) % n])
        assignment[partition] = replicas
    return assignment


def _in_order(replicas: Sequence[int], allowed: Collection[int]) -> list[int]:
    return [r for r in replicas if r in allowed]


def new_partition(
    replicas: Sequence[int], live: Collection[int], controller_epoch: int
) -> PartitionState | None:
    """A new partition's first state: the first live replica leads, every live replica is in
    sync, leader epoch 0; None while no replica is live (it stays new until one starts)."""
    alive = _in_order(replicas, live)
    if not alive:
        return None
    return PartitionState(alive[0], 0, tuple(alive), controller_epoch)


def _offline(state: PartitionState, last: int, controller_epoch: int) -> PartitionState:
    return PartitionState(NO_LEADER, state.leader_epoch + 1, (last,), controller_epoch)


def on_broker_failure(
    state: PartitionState,
    replicas: Sequence[int],
    failed: Collection[int],
    live: Collection[int],
    controller_epoch: int,
    unclean: bool = False,
) -> PartitionState | None:
    """Brokers ``failed`` are gone (or bounced: a new incarnation is not the one in sync).
    If one led the partition, the first live ISR member in assignment order leads, one epoch
    on; none left: offline, keeping the last ISR member, unless ``unclean`` lets a live
    out-of-sync replica lead alone.  A failed follower leaves the ISR (one epoch on)."""
    survivors = tuple(b for b in state.isr if b not in failed)
    up = [b for b in live if b not in failed]
    if state.leader in failed or (state.leader == NO_LEADER and not survivors):
        candidates = _in_order(replicas, set(survivors) & set(up))
        if candidates:
            return PartitionState(
                candidates[0],
                state.leader_epoch + 1,
                tuple(b for b in survivors if b in up),
                controller_epoch,
            )
        if unclean:
            chosen = _in_order(replicas, up)
            if chosen:
                return PartitionState(
                    chosen[0], state.leader_epoch + 1, (chosen[0],), controller_epoch
                )
        if state.leader == NO_LEADER:
            return None  # offline already: it keeps the member it had
        last = state.leader if state.leader in state.isr else state.isr[-1]
        return _offline(state, last, controller_epoch)
    if survivors == state.isr or state.leader == NO_LEADER:
        return None
    return PartitionState(state.leader, state.leader_epoch + 1, survivors, controller_epoch)


def on_broker_start(
    state: PartitionState,
    replicas: Sequence[int],
    live: Collection[int],
    controller_epoch: int,
    unclean: bool = False,
) -> PartitionState | None:
    """A broker started: an offline partition whose ISR holds a live broker gets it as
    leader, one epoch on (a replication factor 1 partition gets its only replica back); with
    ``unclean`` an offline partition takes any live replica, which alone is in sync."""
    if state.leader != NO_LEADER and state.leader in live:
        return None
    candidates = _in_order(replicas, set(state.isr) & set(live))
    if candidates:
        isr = tuple(b for b in state.isr if b in live)
        return PartitionState(candidates[0], state.leader_epoch + 1, isr, controller_epoch)
    if unclean:
        chosen = _in_order(replicas, live)
        if chosen:
            return PartitionState(chosen[0], state.leader_epoch + 1, (chosen[0],), controller_epoch)
    return None


def preferred_leader(
    state: PartitionState, replicas: Sequence[int], live: Collection[int], controller_epoch: int
) -> PartitionState | None:
    """Preferred-leader election: the first replica, if alive and in sync but not leading,
    takes leadership one epoch on; otherwise nothing changes."""
    if not replicas:
        return None
    preferred = replicas[0]
    if state.leader == preferred or preferred not in live or preferred not in state.isr:
        return None
    return PartitionState(preferred, state.leader_epoch + 1, state.isr, controller_epoch)


def controlled_shutdown(
    state: PartitionState,
    replicas: Sequence[int],
    broker: int,
    live: Collection[int],
    controller_epoch: int,
) -> tuple[PartitionState | None, bool]:
    """Broker ``broker`` is about to stop: (the state to write, whether the partition could
    be handled).  A partition it leads moves to the first other live ISR member (one epoch
    on, ``broker`` out of the ISR); with none, it stays (False: the broker is told so).
    A partition it follows in sync loses it from the ISR."""
    if state.leader == broker:
        others = _in_order(replicas, (set(state.isr) & set(live)) - {broker})
        if not others:
            return None, False
        isr = tuple(b for b in state.isr if b != broker)
        return PartitionState(others[0], state.leader_epoch + 1, isr, controller_epoch), True
    if broker in state.isr and state.leader != NO_LEADER:
        isr = tuple(b for b in state.isr if b != broker)
        return PartitionState(state.leader, state.leader_epoch + 1, isr, controller_epoch), True
    return None, True


def registered_since(
    state: PartitionState, written_at: int | None, broker_epochs: dict[int, int]
) -> set[int]:
    """The brokers among ``state``'s leader and ISR registered after the state's last write
    (``written_at``, its node's mzxid; None: not known, nobody): each broker epoch (the czxid
    of its registration) is newer, so it bounced or restarted since and no controller decided
    the partition for that incarnation (one elected since would not have seen the bounce)."""
    if written_at is None:
        return set()
    members = set(state.isr) | {state.leader}
    return {b for b in members if broker_epochs.get(b, -1) > written_at}


def on_broker_bounce(
    state: PartitionState,
    replicas: Sequence[int],
    bounced: Collection[int],
    live: Collection[int],
    controller_epoch: int,
    unclean: bool = False,
) -> PartitionState | None:
    """Brokers ``bounced`` (live now) are new incarnations of ones in the state: handled as a
    failure and then a start, as ``brokers_changed`` has the controller do, folded into one
    state.  A bounced leader is replaced by a live in-sync replica, or leads again one epoch
    later when it was the only one; a bounced follower leaves the ISR.  Either way the leader
    gets a state written after its registration, which it waits for before taking writes."""
    failed = on_broker_failure(state, replicas, bounced, live, controller_epoch, unclean)
    started = on_broker_start(failed or state, replicas, live, controller_epoch, unclean)
    return started or failed


def brokers_changed(known: dict[int, int], current: dict[int, int]) -> tuple[set[int], set[int]]:
    """(failed, started) from two views of the broker registry, each broker id -> its epoch
    (the czxid of its registration, KIP-380): a broker whose epoch changed bounced, so it is
    in both sets, to be handled as a failure and then a start."""
    bounced = {b for b in known.keys() & current.keys() if known[b] != current[b]}
    return (known.keys() - current.keys()) | bounced, (current.keys() - known.keys()) | bounced
