"""Replication's building blocks: the leader's bookkeeping, the acks=all wait, the
broker-to-broker client and the follower's fetch loop.

How the pieces fit (the broker wires them; nothing here reads ZooKeeper or a socket it was
not handed):

- On the **leader**, one ``LeaderState`` per partition (``state.py``, pure) learns every
  append (``leader_appended``) and every follower Fetch (``follower_fetched``: a Fetch with
  ``replica_id`` >= 0 tells the follower's log end); when either moves the high watermark,
  the broker tells ``DelayedProduces.hw_moved`` (``delayed.py``), which answers the acks=all
  produces now covered, and wakes consumers' long polls.  A periodic check takes
  ``shrink_candidates`` (followers behind for ``replica.lag.time.max.ms``) and, after a
  follower's fetch, ``expand_candidate``; the ISR is changed in ZooKeeper first and then
  ``apply_isr``.  Produce with acks=all asks ``enough_replicas(min.insync.replicas)``
  before appending (NOT_ENOUGH_REPLICAS) and waits in ``DelayedProduces.wait``; lost
  leadership is ``fail_all``, an ISR shrunk below the minimum ``not_enough_replicas``.
- On a **follower**, one ``ReplicaFetcher`` per leader broker (``fetcher.py``) owns a
  ``BrokerClient`` to it (``client.py``) and, for each partition it follows, a
  ``FollowerLog`` (``log.py``; ``PartitionLog`` implements it).  A partition added at a
  leader epoch first truncates where its history diverges from the leader's (KIP-279,
  decisions in ``truncation.py``, asked with OffsetForLeaderEpoch), then fetches; a
  NOT_LEADER / FENCED / UNKNOWN_LEADER_EPOCH answer pauses it until its new role is given
  with ``add_partition`` again.
"""

from .client import BrokerClient, NetworkExceptionError, RequestTimedOutError
from .delayed import DelayedProduces
from .fetcher import FETCHING, PAUSED, TRUNCATING, FetcherConfig, ReplicaFetcher
from .log import FollowerLog
from .state import FollowerProgress, LeaderState, NotAssignedReplicaError
from .truncation import Truncation, out_of_range_action, truncation_for

__all__ = [
    "FETCHING",
    "PAUSED",
    "TRUNCATING",
    "BrokerClient",
    "DelayedProduces",
    "FetcherConfig",
    "FollowerLog",
    "FollowerProgress",
    "LeaderState",
    "NetworkExceptionError",
    "NotAssignedReplicaError",
    "ReplicaFetcher",
    "RequestTimedOutError",
    "Truncation",
    "out_of_range_action",
    "truncation_for",
]
