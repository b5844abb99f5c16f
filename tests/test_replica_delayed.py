"""Delayed produces for acks=all (broker/replica/delayed.py) on a task.Clock: each waiter is
answered once, with the code its case calls for."""

from __future__ import annotations

from twisted.internet.defer import CancelledError
from twisted.internet.task import Clock

from broker.replica.delayed import (
    NOT_ENOUGH_REPLICAS_AFTER_APPEND,
    NOT_LEADER_OR_FOLLOWER,
    REQUEST_TIMED_OUT,
    DelayedProduces,
)


def results(deferreds):
    out = []
    for d in deferreds:
        d.addBoth(out.append)
    return out


def test_waiters_complete_when_the_high_watermark_reaches_their_offset():
    clock = Clock()
    produces = DelayedProduces(clock)
    a, b, c = (produces.wait("t", 0, offset, 30_000) for offset in (10, 20, 30))
    other = produces.wait("t", 1, 10, 30_000)
    got = results([a, b, c, other])
    assert produces.hw_moved("t", 0, 9) == 0
    assert got == []
    assert produces.hw_moved("t", 0, 20) == 2
    assert got == [0, 0]
    assert len(produces) == 2
    assert produces.hw_moved("t", 0, 30) == 1
    assert got == [0, 0, 0] and len(produces) == 1


def test_a_waiter_times_out_with_request_timed_out_and_is_forgotten():
    clock = Clock()
    produces = DelayedProduces(clock)
    got = results([produces.wait("t", 0, 10, 1_500)])
    clock.advance(1.4)
    assert got == []
    clock.advance(0.2)
    assert got == [REQUEST_TIMED_OUT]
    assert len(produces) == 0
    assert produces.hw_moved("t", 0, 10) == 0  # nothing answered twice
    assert got == [REQUEST_TIMED_OUT]
    assert not clock.getDelayedCalls()


def test_lost_leadership_fails_every_waiter_of_the_partition_only():
    clock = Clock()
    produces = DelayedProduces(clock)
    got = results([produces.wait("t", 0, 10, 30_000), produces.wait("t", 0, 20, 30_000)])
    kept = results([produces.wait("t", 1, 10, 30_000)])
    assert produces.fail_all("t", 0) == 2
    assert got == [NOT_LEADER_OR_FOLLOWER, NOT_LEADER_OR_FOLLOWER]
    assert kept == []
    assert len(clock.getDelayedCalls()) == 1  # only the other partition's timer is left


def test_an_isr_below_the_minimum_answers_not_enough_replicas_after_append():
    produces = DelayedProduces(Clock())
    got = results([produces.wait("t", 0, 10, 30_000)])
    assert produces.not_enough_replicas("t", 0) == 1
    assert got == [NOT_ENOUGH_REPLICAS_AFTER_APPEND]


def test_a_cancelled_waiter_is_dropped_without_an_answer():
    clock = Clock()
    produces = DelayedProduces(clock)
    d = produces.wait("t", 0, 10, 30_000)
    kept = produces.wait("t", 0, 10, 30_000)
    got = results([d])
    d.cancel()  # the producer's connection closed
    assert got[0].check(CancelledError)
    assert len(produces) == 1 and len(clock.getDelayedCalls()) == 1
    assert produces.hw_moved("t", 0, 10) == 1
    assert kept.result == 0
    assert not clock.getDelayedCalls()


def test_many_waiters_complete_in_offset_order():
    produces = DelayedProduces(Clock())
    order = []
    for offset in (50, 10, 40, 20, 30):
        produces.wait("t", 0, offset, 30_000).addCallback(lambda _, o=offset: order.append(o))
    produces.hw_moved("t", 0, 100)
    assert order == [10, 20, 30, 40, 50]
