"""Controlled shutdown, the leaving broker's side (Kafka's ``KafkaServer.controlledShutdown``):
before it stops, a broker asks the controller to move its leaderships to other in-sync
replicas, so producers with retries see no failed send and consumers no gap.

    >>> d = controlled_shutdown(reactor, cluster, controller, config)
    >>> d.addCallback(lambda moved: broker.stop())   # moved: False if some leadership stayed

ControlledShutdown v2 (broker id, broker epoch) goes to the controller named by
``/controller``, through the listener it registered; an answer listing partitions this broker
still leads, an error, or no controller at all is tried again after
``controlled.shutdown.retry.backoff.ms``, at most ``controlled.shutdown.max.retries`` times.
Partitions whose only replica is this broker cannot move and are not waited for (Kafka
leaves them out of its count too).
"""

from __future__ import annotations

import logging

from twisted.internet import defer, task

from .protocol.errors import KafkaError, error_for_code
from .protocol.registry import ApiKey
from .replica.client import BrokerClient
from .security.interbroker import PLAINTEXT_LINK

log = logging.getLogger(__name__)


def movable(remaining, topics: dict[int, list[int]] | dict, broker_id: int) -> list:
    """The partitions of a ControlledShutdown answer worth waiting for: those with another
    replica to lead them."""
    left = []
    for entry in remaining:
        topic, partition = entry["topic_name"], entry["partition_index"]
        replicas = topics.get(topic, {}).get(partition, [])
        if any(r != broker_id for r in replicas):
            left.append((topic, partition))
    return left


@defer.inlineCallbacks
def controlled_shutdown(reactor, cluster, controller, config, login=None):
    """Ask the controller until no leadership that can move is left here; a Deferred of
    True when done, False when the retries ran out (the broker then stops anyway).
    ``login``: the broker's SASL login, when the controller's listener needs one."""
    broker_id = config["broker.id"]
    retries = config["controlled.shutdown.max.retries"]
    backoff_s = config["controlled.shutdown.retry.backoff.ms"] / 1000.0
    timeout_ms = config["replica.socket.timeout.ms"]
    for attempt in range(1, retries + 1):
        why = None
        target = cluster.metadata.brokers.get(controller.controller_id)
        link = getattr(cluster, "inter_broker", PLAINTEXT_LINK)
        address = None if target is None else link.address(target)
        if target is None:
            why = "no controller is known"
        elif address is None:
            why = f"the controller has no {link.listener} listener"
        else:
            client = BrokerClient(
                reactor,
                address[0],
                address[1],
                security=link,
                client_id=f"broker-{broker_id}",
                request_timeout_ms=timeout_ms,
                login=login,
            )
            try:
                body = yield client.request(
                    ApiKey.CONTROLLED_SHUTDOWN,
                    {"broker_id": broker_id, "broker_epoch": cluster.broker_epoch},
                    version=2,
                )
                if body["error_code"]:
                    raise error_for_code(body["error_code"])(
                        f"controller {target.node_id} answered"
                    )
                left = movable(body["remaining_partitions"], cluster.metadata.topics, broker_id)
                if not left:
                    log.info("controlled shutdown of broker %d succeeded", broker_id)
                    return True
                why = f"{len(left)} leaderships could not move yet, e.g. {left[0]}"
            except KafkaError as exc:
                why = f"{exc.name}: {exc}"
            except Exception as exc:  # a broken answer: asked again like any failure
                why = repr(exc)
            finally:
                yield client.close()
        log.warning(
            "controlled shutdown attempt %d of %d failed (%s)%s",
            attempt,
            retries,
            why,
            "; retrying" if attempt < retries else "",
        )
        if attempt < retries:
            yield task.deferLater(reactor, backoff_s, lambda: None)
    log.warning("controlled shutdown of broker %d failed; stopping anyway", broker_id)
    return False


__all__ = ["controlled_shutdown", "movable"]
