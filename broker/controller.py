"""The controller, elected through ZooKeeper as in Kafka 0.8-2.x: one broker at a time decides
every partition's leader, leader epoch and in-sync replicas and writes them to ZooKeeper.

    >>> controller = Controller(zk_client, broker_id=1, reactor=reactor)
    >>> controller.start()           # stand for election; act while elected
    >>> d = controller.controlled_shutdown(2, broker_epoch)   # Deferred of what could not move
    >>> controller.stop()

Every broker runs one.  Election: create the ephemeral ``/controller``; who loses watches it
and stands again when it goes.  The winner increments ``/controller_epoch`` with a
compare-and-set and keeps the node's version: every write it then makes is one transaction
that checks that version and sets (or creates) a state node at the version it read, so a
controller superseded or cut off by a lost session can change nothing; when the check fails it
stops acting.  Kazoo's watches (``/brokers/ids`` with each broker's epoch, the czxid of its
registration; ``/brokers/topics`` and each placement; each partition's state) only queue
events: one thread takes them in order and runs the decisions of ``broker/election.py``.

States: *candidate* (standing or watching ``/controller``), *active* (elected, acting),
*stopped*.  A lost session makes an active controller a candidate again; a reconnect on the
same session reads everything again (an event cut short by the drop is decided anew).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from kazoo.client import KazooState
from kazoo.exceptions import (
    BadVersionError,
    ConnectionLoss,
    NodeExistsError,
    NoNodeError,
    RolledBackError,
    RuntimeInconsistency,
    SessionExpiredError,
)
from twisted.internet import defer

from . import election
from .protocol import errors
from .protocol import zookeeper as layout
from .protocol.zookeeper import CONTROLLER, CONTROLLER_EPOCH, MalformedNodeError, PartitionState

log = logging.getLogger(__name__)

TIMEOUT = 10.0  # seconds a ZooKeeper call may take


class ControllerMovedError(RuntimeError):
    """A write's check of ``/controller_epoch`` failed: another controller was elected since."""


Partition = tuple[str, int]


class Controller:
    """Stands for election and, while elected, keeps every partition's state (see module)."""

    def __init__(
        self,
        client,
        broker_id: int,
        reactor=None,
        *,
        unclean_leader_election: bool = False,
        auto_leader_rebalance: bool = True,
        leader_imbalance_check_interval_s: float = 300.0,
    ):
        self.client = client
        self.broker_id = broker_id
        self.reactor = reactor
        self.unclean = unclean_leader_election
        self.auto_rebalance = auto_leader_rebalance
        self.rebalance_interval = leader_imbalance_check_interval_s
        self.active = False
        self.epoch = 0
        self.epoch_version = -1  # the version of /controller_epoch our writes check
        self.controller_id = -1  # the controller as last seen
        self.leader_elections = 0  # partitions given a new live leader while active
        self.events: queue.Queue = queue.Queue()
        self._thread = threading.Thread(
            target=self._run, name=f"controller-{broker_id}", daemon=True
        )
        self._stopped = False
        self._watchers: dict[tuple, Callable] = {}
        # The controller's view, touched only on its thread.
        self.brokers: dict[int, int] = {}  # live broker id -> broker epoch
        self.shutting_down: set[int] = set()
        self.placements: dict[str, dict[int, list[int]]] = {}
        self.unclean_topics: dict[str, bool] = {}
        self.states: dict[Partition, tuple[PartitionState, int]] = {}
        self.written_at: dict[Partition, int] = {}  # each state node's mzxid, where known

    # --- life cycle ----------------------------------------------------------------------

    def start(self) -> None:
        self.client.add_listener(self._on_session)
        self._thread.start()
        self.events.put(("elect",))

    def stop(self, timeout: float = 10.0) -> None:
        """Stop acting and standing; give up ``/controller`` if it is ours."""
        self._stopped = True
        self.client.remove_listener(self._on_session)
        self.events.put(None)
        self._thread.join(timeout)
        if self.active and self.client.connected:
            self.active = False
            try:
                stat = self.client.exists(CONTROLLER)
                if stat is not None and stat.ephemeralOwner == self.client.client_id[0]:
                    self.client.delete(CONTROLLER, version=stat.version)
            except Exception:  # the session's end removes it anyway
                pass

    def _on_session(self, state) -> None:  # kazoo thread: must not block
        if state == KazooState.LOST:
            self.events.put(("resign", "the ZooKeeper session was lost"))
        elif state == KazooState.CONNECTED:
            self.events.put(("elect",))

    def _watch(self, *event):
        """A kazoo watcher that queues ``event`` (and nothing else) for the controller thread;
        the same object for the same event, so kazoo keeps one per node however often it is
        set again."""
        watcher = self._watchers.get(event)
        if watcher is None:
            watcher = self._watchers[event] = lambda watched_event=None: self.events.put(event)
        return watcher

    def _run(self) -> None:
        next_rebalance = time.monotonic() + self.rebalance_interval
        while True:
            wait = max(0.0, next_rebalance - time.monotonic())
            try:
                event = self.events.get(timeout=wait)
            except queue.Empty:
                event = ("rebalance",)
                next_rebalance = time.monotonic() + self.rebalance_interval
            if event is None or self._stopped:
                return
            try:
                getattr(self, f"_on_{event[0]}")(*event[1:])
            except ControllerMovedError as exc:
                self._resign(str(exc))
            except (ConnectionLoss, SessionExpiredError) as exc:
                # the session's listener queues what follows (resign, stand again)
                log.warning("controller event %s: ZooKeeper unreachable (%r)", event[0], exc)
            except Exception:
                log.exception("controller event %s failed", event[0])

    # --- election ------------------------------------------------------------------------

    def _on_elect(self) -> None:
        if not self.client.connected:
            return
        if self.active:  # reconnected on our session
            return self._reconcile()
        reg = layout.ControllerRegistration(self.broker_id, int(time.time() * 1000))
        try:
            self.client.create(CONTROLLER, layout.encode_controller(reg), ephemeral=True)
        except NodeExistsError:
            self._watch_controller()
            return
        self._become_controller()

    def _watch_controller(self) -> None:
        """Someone holds ``/controller``: watch it; stand again when it goes.  A node of our
        own broker id from another session is our previous run's (an id is registered by one
        live broker only): removed at once rather than waited out."""
        try:
            data, stat = self.client.get(CONTROLLER, watch=self._watch("elect"))
        except NoNodeError:
            self.events.put(("elect",))
            return
        try:
            holder = layout.decode_controller(data, CONTROLLER).broker_id
        except MalformedNodeError as exc:
            log.warning("%s", exc)
            holder = -1
        self.controller_id = holder
        if stat.ephemeralOwner == self.client.client_id[0]:
            self._become_controller()  # ours from before a reconnect
        elif holder == self.broker_id:
            log.warning("removing the controller node our previous run left")
            try:
                self.client.delete(CONTROLLER, version=stat.version)
            except (NoNodeError, BadVersionError):
                pass

    def _become_controller(self) -> None:
        try:
            data, stat = self.client.get(CONTROLLER_EPOCH)
            epoch = layout.decode_controller_epoch(data, CONTROLLER_EPOCH) + 1
            stat = self.client.set(
                CONTROLLER_EPOCH, layout.encode_controller_epoch(epoch), version=stat.version
            )
        except NoNodeError:
            epoch = 1
            try:
                _, stat = self.client.create(
                    CONTROLLER_EPOCH, layout.encode_controller_epoch(epoch), include_data=True
                )
            except NodeExistsError:
                return self._give_up_election()
        except BadVersionError:
            return self._give_up_election()
        self.epoch, self.epoch_version = epoch, stat.version
        self.active, self.controller_id = True, self.broker_id
        log.info("broker %d is the controller (epoch %d)", self.broker_id, epoch)
        self.brokers, self.placements, self.states, self.written_at = {}, {}, {}, {}
        self.shutting_down = set()
        self._on_brokers(initial=True)
        self._on_topics()

    def _reconcile(self) -> None:
        """After a reconnect on our session: an event being handled when the connection
        dropped was cut short (its ZooKeeper call failed), so read the brokers and every
        state again and decide as a newly elected controller does (a bounce it missed shows
        as a broker registered after a state, ``_on_topic``)."""
        self._on_brokers()
        self.states, self.written_at = {}, {}
        for name in sorted(self.placements):
            self._on_topic(name)
        self._on_topics()

    def _give_up_election(self) -> None:
        """Another controller moved the epoch while we created ``/controller``: let go."""
        try:
            self.client.delete(CONTROLLER)
        except NoNodeError:
            pass
        self.events.put(("elect",))

    def _resign(self, why: str) -> None:
        if self.active:
            log.warning("broker %d stops acting as controller: %s", self.broker_id, why)
        self.active = False
        if not self._stopped:
            self.events.put(("elect",))

    def _on_resign(self, why: str) -> None:
        self._resign(why)

    # --- the fenced write ----------------------------------------------------------------

    def write_states(
        self, changes: list[tuple[Partition, PartitionState, int | None]]
    ) -> dict[Partition, int | Exception]:
        """Write each partition's new state: one transaction each, checking the version of
        ``/controller_epoch`` this controller set and the state node's version (None: create
        it, and its parents where missing).  The transactions are pipelined.  Returns each
        partition's new node version or the error; raises ControllerMovedError if an epoch
        check failed (that transaction, and any after it, wrote nothing)."""
        pending = []
        made: set[str] = set()
        for (topic, partition), state, version in changes:
            tx = self.client.transaction()
            tx.check(CONTROLLER_EPOCH, self.epoch_version)
            data = layout.encode_partition_state(state)
            path = layout.partition_state_path(topic, partition)
            if version is None:
                for parent in (
                    layout.partitions_path(topic),
                    layout.partition_path(topic, partition),
                ):
                    if parent not in made and not self.client.exists(parent):
                        tx.create(parent)
                    made.add(parent)
                tx.create(path, data)
            else:
                tx.set_data(path, data, version=version)
            pending.append(((topic, partition), state, tx.commit_async()))
        written: dict[Partition, int | Exception] = {}
        moved = False
        for key, state, result in pending:
            outcome = result.get(timeout=TIMEOUT)
            if isinstance(outcome[0], BadVersionError):
                moved = True
                written[key] = ControllerMovedError("controller epoch check failed")
                continue
            failure = next((r for r in outcome if _real_error(r)), None)
            if failure is not None:
                written[key] = failure
                continue
            last = outcome[-1]
            version = 0 if isinstance(last, str) else last.version
            before = self.states.get(key)
            if state.leader >= 0 and (before is None or before[0].leader != state.leader):
                self.leader_elections += 1
            self.states[key] = (state, version)
            if isinstance(last, str):  # created: its zxid is read with the node
                self.written_at.pop(key, None)
            else:
                self.written_at[key] = last.mzxid
            written[key] = version
        if moved:
            raise ControllerMovedError(
                f"/controller_epoch moved past our epoch {self.epoch}: another controller acts"
            )
        return written

    def _transition(self, partitions, decide: Callable) -> list[Partition]:
        """Run ``decide(partition, state, replicas) -> new state or None`` for each partition
        and write what it returns; a partition whose node changed under us is read again and
        decided again.  Returns the partitions whose write failed for good."""
        todo = list(partitions)
        failed: list[Partition] = []
        for attempt in range(3):
            changes = []
            for key in todo:
                replicas = self.placements.get(key[0], {}).get(key[1])
                if replicas is None:
                    continue
                known = self.states.get(key)
                new = decide(key, None if known is None else known[0], replicas)
                if new is not None:
                    changes.append((key, new, None if known is None else known[1]))
            if not changes:
                return failed
            results = self.write_states(changes)
            todo = [key for key, result in results.items() if isinstance(result, Exception)]
            for key in todo:
                if key[0] in self.placements:
                    self._read_state(*key)
            if attempt == 2:
                failed = todo
        for key in failed:
            log.warning("could not write the state of %s-%d", *key)
        return failed

    # --- events --------------------------------------------------------------------------

    def _live(self) -> set[int]:
        return set(self.brokers) - self.shutting_down

    def _unclean(self, topic: str) -> bool:
        return self.unclean_topics.get(topic, self.unclean)

    def _on_brokers(self, initial: bool = False) -> None:
        if not self.active:
            return
        children = self.client.get_children(layout.BROKER_IDS, watch=self._watch("brokers"))
        current = {}
        for child in children:
            if child.isdigit():
                stat = self.client.exists(layout.broker_path(child))
                if stat is not None:
                    current[int(child)] = stat.czxid
        failed, started = election.brokers_changed(self.brokers, current)
        self.brokers = current
        self.shutting_down -= failed | started
        if initial:
            return
        if failed:
            log.info("controller: brokers %s failed or bounced", sorted(failed))
            self._brokers_failed(failed)
        if started:
            log.info("controller: brokers %s started", sorted(started))
            self._brokers_started()

    def _brokers_failed(self, failed: set[int]) -> None:
        live = self._live()
        hit = [
            k
            for k, (state, _) in self.states.items()
            if state.leader in failed or failed & set(state.isr)
        ]
        self._transition(
            hit,
            lambda key, state, replicas: (
                state
                and election.on_broker_failure(
                    state, replicas, failed, live, self.epoch, self._unclean(key[0])
                )
            ),
        )

    def _brokers_started(self) -> None:
        live = self._live()

        def decide(key, state, replicas):
            if state is None:
                return election.new_partition(replicas, live, self.epoch)
            return election.on_broker_start(
                state, replicas, live, self.epoch, self._unclean(key[0])
            )

        self._transition(self._all_partitions(), decide)

    def _all_partitions(self) -> list[Partition]:
        return [(t, p) for t, placement in self.placements.items() for p in placement]

    def _on_topics(self) -> None:
        if not self.active:
            return
        names = set(self.client.get_children(layout.BROKER_TOPICS, watch=self._watch("topics")))
        for gone in set(self.placements) - names:
            self._forget(gone)
        for name in sorted(names - set(self.placements)):
            self._on_topic(name)

    def _forget(self, topic: str) -> None:
        self.placements.pop(topic, None)
        for event in [e for e in self._watchers if e[0] in ("topic", "state") and e[1] == topic]:
            del self._watchers[event]
        self.unclean_topics.pop(topic, None)
        for key in [k for k in self.states if k[0] == topic]:
            del self.states[key]
            self.written_at.pop(key, None)

    def _on_topic(self, name: str) -> None:
        """A topic appeared or its placement changed: read it, its config and the states of
        its partitions; give new partitions their first state, and elect where the leader is
        not live (this controller may be new, and brokers may have failed meanwhile) or was
        registered after the state was written (it bounced where no controller saw it: its
        new incarnation must get a state of its own, ``election.on_broker_bounce``)."""
        if not self.active:
            return
        try:
            data, _ = self.client.get(layout.topic_path(name), watch=self._watch("topic", name))
            placement = layout.decode_topic(data, layout.topic_path(name)).partitions
        except NoNodeError:
            return self._forget(name)
        except MalformedNodeError as exc:
            log.warning("controller: %s", exc)
            return
        self.placements[name] = placement
        try:
            config, _ = self.client.get(layout.topic_config_path(name))
            value = layout.decode_topic_config(config).get("unclean.leader.election.enable")
            if value is not None:
                self.unclean_topics[name] = value.strip().lower() == "true"
        except (NoNodeError, MalformedNodeError):
            pass
        for partition in placement:
            if (name, partition) not in self.states:
                self._read_state(name, partition)
        live = self._live()

        def decide(key, state, replicas):
            if state is None:
                return election.new_partition(replicas, live, self.epoch)
            gone = (set(replicas) | set(state.isr)) - live
            bounced = live & election.registered_since(
                state, self.written_at.get(key), self.brokers
            )
            if state.leader not in live or bounced:
                return election.on_broker_bounce(
                    state, replicas, gone | bounced, live, self.epoch, self._unclean(name)
                )
            return election.on_broker_failure(state, replicas, gone, live, self.epoch)

        self._transition([(name, p) for p in placement], decide)

    def _read_state(self, topic: str, partition: int) -> None:
        path = layout.partition_state_path(topic, partition)
        try:
            data, stat = self.client.get(path, watch=self._watch("state", topic, partition))
        except NoNodeError:
            self.client.exists(path, watch=self._watch("state", topic, partition))
            self.states.pop((topic, partition), None)
            self.written_at.pop((topic, partition), None)
            return
        try:
            self.states[(topic, partition)] = (
                layout.decode_partition_state(data, path),
                stat.version,
            )
            self.written_at[(topic, partition)] = stat.mzxid
        except MalformedNodeError as exc:
            log.warning("controller: %s", exc)

    def _on_state(self, topic: str, partition: int) -> None:
        """A state node changed (a leader's ISR update, or our own write): read it again."""
        if self.active and topic in self.placements:
            self._read_state(topic, partition)

    def _on_rebalance(self) -> None:
        """Preferred-leader election (``auto.leader.rebalance.enable``)."""
        if not (self.active and self.auto_rebalance):
            return
        live = self._live()
        self._transition(
            self._all_partitions(),
            lambda key, state, replicas: (
                state and election.preferred_leader(state, replicas, live, self.epoch)
            ),
        )

    # --- controlled shutdown -------------------------------------------------------------

    def controlled_shutdown(self, broker: int, broker_epoch: int = -1):
        """A Deferred (fired on the reactor) of the partitions ``broker`` leads that could
        not be moved, as [(topic, partition)]; fails with NotControllerError if this broker
        is not the controller, StaleBrokerEpochError for an older incarnation's request."""
        return self.submit(lambda controller: controller.shut_down_broker(broker, broker_epoch))

    def submit(self, work: Callable):
        """A Deferred (fired on the reactor) of ``work(self)`` run on the controller thread,
        in order with the events (an admin request's decisions and writes); it fails with
        what ``work`` raises."""
        d: defer.Deferred = defer.Deferred()

        def reply(outcome):
            fire = d.errback if isinstance(outcome, Exception) else d.callback
            self.reactor.callFromThread(fire, outcome)

        self.events.put(("work", work, reply))
        return d

    def _on_work(self, work: Callable, reply) -> None:
        try:
            reply(work(self))
        except Exception as exc:
            reply(exc)
            if isinstance(exc, ControllerMovedError):
                raise

    def shut_down_broker(self, broker: int, broker_epoch: int = -1) -> list[Partition]:
        """On the controller thread: move ``broker``'s leaderships to other live in-sync
        replicas and take it out of the ISRs it follows in; the partitions it still leads."""
        if not self.active:
            raise errors.NotControllerError(f"broker {self.broker_id} is not the controller")
        if broker not in self.brokers:
            raise errors.BrokerNotAvailableError(f"broker {broker} is not registered")
        if broker_epoch != -1 and broker_epoch < self.brokers[broker]:
            raise errors.StaleBrokerEpochError(
                f"broker epoch {broker_epoch} of broker {broker} is older than "
                f"{self.brokers[broker]}"
            )
        self.shutting_down.add(broker)
        live = self._live() | {broker}
        stuck: list[Partition] = []

        def decide(key, state, replicas):
            if state is None or broker not in replicas:
                return None
            new, moved = election.controlled_shutdown(state, replicas, broker, live, self.epoch)
            if not moved and key not in stuck:
                stuck.append(key)
            return new

        failed = self._transition(self._all_partitions(), decide)
        return sorted(
            set(stuck)
            | {k for k in failed if k in self.states and self.states[k][0].leader == broker}
        )


def _real_error(result) -> bool:
    """An error in a transaction's results other than the roll-back of its other ops."""
    return isinstance(result, Exception) and not isinstance(
        result, (RolledBackError, RuntimeInconsistency)
    )
