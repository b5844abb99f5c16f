"""The broker's Prometheus figures read from its state when Prometheus scrapes (on the reactor
thread): connections, waiting fetches, groups, the ZooKeeper session, each local log's end
offset and size, and replication (partitions led, under-replicated and offline partitions,
follower lag, ISR changes, the controller and its elections)."""

from __future__ import annotations

from collections import Counter as Tally

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .cleaner_metrics import cleaner_families
from .groups import COMPLETING, DEAD, EMPTY, PREPARING, STABLE

GROUP_STATES = (EMPTY, PREPARING, COMPLETING, STABLE, DEAD)
ZOOKEEPER_STATES = ("connected", "suspended", "lost")


class BrokerStateCollector:
    """Gauges (and counters kept by the broker's parts) read at scrape time."""

    def __init__(self, broker):
        self.broker = broker

    def describe(self):
        return []

    def collect(self):
        broker = self.broker
        if broker.handlers is None:  # not started yet
            return
        connections = sum(len(f.connections) for f in broker.factories.values())
        yield _gauge("headrace_connections", "Open client connections", connections)
        yield _gauge(
            "headrace_waiting_fetches",
            "Fetches parked waiting for data (long polls)",
            len(broker.handlers.waiters),
        )
        yield self._groups()
        yield self._zookeeper()
        yield from self._logs()
        yield from self._replication()
        yield from cleaner_families(broker.manager.cleaner)

    def _groups(self):
        family = GaugeMetricFamily(
            "headrace_groups",
            "Kafka-protocol groups this broker coordinates, by state",
            labels=["state"],
        )
        states = Tally(g.state for g in self.broker.handlers.groups.coordinator.groups.values())
        for state in GROUP_STATES:
            family.add_metric([state], states.get(state, 0))
        return family

    def _zookeeper(self):
        family = GaugeMetricFamily(
            "headrace_zookeeper_session_state",
            "This broker's ZooKeeper session: 1 for its state now, 0 for the others",
            labels=["state"],
        )
        client = self.broker.cluster.client
        now = str(client.state).lower() if client is not None else "lost"
        for state in ZOOKEEPER_STATES:
            family.add_metric([state], 1 if state == now else 0)
        return family

    def _logs(self):
        offsets = GaugeMetricFamily(
            "headrace_log_end_offset",
            "Offset of the next record appended to this broker's log of a partition",
            labels=["topic", "partition"],
        )
        sizes = GaugeMetricFamily(
            "headrace_log_size_bytes",
            "Bytes of this broker's log of a partition, all segments",
            labels=["topic", "partition"],
        )
        for (topic, partition), plog in sorted(self.broker.manager.logs.items()):
            labels = [topic, str(partition)]
            offsets.add_metric(labels, plog.log_end_offset)
            sizes.add_metric(labels, plog.size)
        yield offsets
        yield sizes

    def _replication(self):
        broker = self.broker
        me = broker.config["broker.id"]
        led = sum(
            1
            for partitions in tuple(broker.cluster.metadata.states.values())
            for known in tuple(partitions.values())
            if known.state.leader == me
        )
        yield _gauge("headrace_partitions_led", "Partitions this broker leads", led)
        replicas = broker.replicas
        leaders = [s for s in replicas.leaders.values() if s.is_leader] if replicas else []
        yield _gauge(
            "headrace_under_replicated_partitions",
            "Partitions this broker leads whose ISR is smaller than their replica list",
            sum(1 for s in leaders if s.under_replicated),
        )
        lag = GaugeMetricFamily(
            "headrace_follower_lag_messages",
            "On a leader: records each follower is behind the leader's log end",
            labels=["topic", "partition", "follower"],
        )
        for state in leaders:
            for follower, progress in sorted(state.followers.items()):
                behind = state.log_end_offset - max(progress.log_end_offset, 0)
                lag.add_metric([state.topic, str(state.partition), str(follower)], max(behind, 0))
        yield lag
        yield _counter(
            "headrace_isr_shrinks",
            "ISR shrinks this broker wrote as a leader",
            replicas.isr_shrinks if replicas else 0,
        )
        yield _counter(
            "headrace_isr_expands",
            "ISR expansions this broker wrote as a leader",
            replicas.isr_expands if replicas else 0,
        )
        controller = broker.controller
        active = controller is not None and controller.active
        yield _gauge(
            "headrace_controller_active", "1 if this broker is the controller", int(active)
        )
        offline = 0
        if active:  # the controller's thread fills these in as it takes office
            live = set(getattr(controller, "brokers", ()))
            states = tuple(getattr(controller, "states", {}).values())
            offline = sum(1 for state, _ in states if state.leader not in live)
        yield _gauge(
            "headrace_offline_partitions",
            "On the controller: partitions without a live leader (0 elsewhere)",
            offline,
        )
        yield _counter(
            "headrace_leader_elections",
            "Partition leaders this broker elected while it was the controller",
            controller.leader_elections if controller is not None else 0,
        )


def _gauge(name: str, documentation: str, value) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _counter(name: str, documentation: str, value) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


__all__ = ["BrokerStateCollector"]
