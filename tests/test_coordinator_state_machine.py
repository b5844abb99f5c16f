"""The consumer-group coordinator's state machine (``broker.groups``), without sockets.

Time is a ``twisted.internet.task.Clock``; every test drives JoinGroup / SyncGroup /
Heartbeat / LeaveGroup / OffsetCommit checks by hand and pins down what Kafka's clients
rely on: the MEMBER_ID_REQUIRED handshake, the initial rebalance delay, leader election and
protocol voting, the error codes clients branch on, session expiry, and responses that fit
the wire schemas of ``broker.protocol.group_apis``.  A hypothesis test throws random
sequences of requests from a few members of two groups at it.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from broker.groups import COMPLETING, EMPTY, PREPARING, STABLE, GroupCoordinator
from broker.protocol.registry import GROUP_APIS
from broker.protocol.schema import Array, Struct

NONE = 0
ILLEGAL_GENERATION = 22
INCONSISTENT_GROUP_PROTOCOL = 23
UNKNOWN_MEMBER_ID = 25
INVALID_SESSION_TIMEOUT = 26
REBALANCE_IN_PROGRESS = 27
MEMBER_ID_REQUIRED = 79

API = {api.name: api for api in GROUP_APIS}

DELAY = 3.0  # initial_rebalance_delay_ms, in seconds
SESSION = 10_000  # the members' default session timeout (ms)
REBALANCE = 30_000  # the members' default rebalance timeout (ms)

RANGE = [("range", b"range-meta")]


def versions(name):
    api = API[name]
    return range(api.min_version, api.max_version + 1)


def carried(type_, value, version, like):
    """``value`` cut down to the fields of ``like`` that version ``version`` of ``type_``
    carries (fields a body leaves out are encoded as their defaults)."""
    if isinstance(type_, Struct):
        return {
            f.name: carried(f.type, value[f.name], version, like[f.name])
            for f in type_.fields
            if f.present(version) and f.name in like
        }
    if isinstance(type_, Array) and value is not None:
        return [carried(type_.item, v, version, w) for v, w in zip(value, like, strict=True)]
    return bytes(value) if isinstance(value, memoryview) else value


def fits(name, body, *, key="response"):
    """``body`` encodes, and decodes back to itself, in every version of API ``name``."""
    schema = getattr(API[name], key)
    for version in versions(name):
        encoded = schema.encode(body, version)
        decoded = schema.decode(encoded, version)
        assert schema.encode(decoded, version) == encoded
        assert carried(schema, decoded, version, body) == carried(schema, body, version, body)


class Result:
    """Watches a Deferred: ``done`` once it fired, ``value`` its result."""

    _UNSET = object()

    def __init__(self, d):
        self._value = self._UNSET
        d.addBoth(self._set)

    def _set(self, value):
        self._value = value
        return value

    @property
    def done(self) -> bool:
        return self._value is not self._UNSET

    @property
    def value(self):
        assert self.done, "the Deferred has not fired"
        if isinstance(self._value, Failure):
            self._value.raiseException()
        return self._value


class Env:
    """A coordinator on a fake clock, with request helpers that default what tests ignore."""

    def __init__(self, **overrides):
        self.clock = Clock()
        options = dict(
            min_session_timeout_ms=1000,
            max_session_timeout_ms=60_000,
            initial_rebalance_delay_ms=int(DELAY * 1000),
        )
        options.update(overrides)
        self.coord = GroupCoordinator(self.clock, **options)

    def advance(self, seconds):
        self.clock.advance(seconds)

    def join(
        self,
        member_id="",
        group="g",
        protocols=RANGE,
        *,
        version=3,
        session=SESSION,
        rebalance=REBALANCE,
        protocol_type="consumer",
        client_id="client",
        instance=None,
    ) -> Result:
        d = self.coord.join(
            group,
            member_id,
            instance,
            protocol_type,
            list(protocols),
            session,
            rebalance,
            version=version,
            client_id=client_id,
            client_host="/127.0.0.1",
        )
        return Result(d)

    def sync(self, member_id, generation, assignments=(), group="g") -> Result:
        return Result(self.coord.sync(group, generation, member_id, list(assignments)))

    def heartbeat(self, member_id, generation, group="g") -> int:
        response = self.coord.heartbeat(group, generation, member_id)
        fits("Heartbeat", response)
        return response["error_code"]

    def leave(self, member_id, group="g") -> int:
        response = self.coord.leave(group, member_id)
        fits("LeaveGroup", response)
        return response["error_code"]

    def state(self, group="g") -> str:
        return self.coord.describe(group)["group_state"]

    def member_ids(self, group="g") -> list[str]:
        return [m["member_id"] for m in self.coord.describe(group)["members"]]

    def form(self, n, group="g", protocols=RANGE, **kw) -> list[dict]:
        """``n`` members join a new group (v3) and complete the first rebalance; returns
        their JoinGroup responses, leader first."""
        joins = [
            self.join(group=group, protocols=protocols, client_id=f"c{i}", **kw) for i in range(n)
        ]
        self.advance(DELAY)
        responses = [j.value for j in joins]
        assert all(r["error_code"] == NONE for r in responses)
        return responses

    def stabilize(self, responses, group="g") -> dict[str, bytes]:
        """Every member syncs; the leader hands each member its id as assignment."""
        leader = next(r for r in responses if r["leader"] == r["member_id"])
        assignments = {m["member_id"]: m["member_id"].encode() for m in leader["members"]}
        followers = [
            self.sync(r["member_id"], r["generation_id"], group=group)
            for r in responses
            if r is not leader
        ]
        mine = self.sync(
            leader["member_id"], leader["generation_id"], assignments.items(), group=group
        )
        for result in [mine, *followers]:
            assert result.value["error_code"] == NONE
        assert self.state(group) == STABLE
        return assignments

    def stable(self, n, group="g", **kw) -> list[dict]:
        responses = self.form(n, group=group, **kw)
        self.stabilize(responses, group=group)
        return responses


@pytest.fixture
def env():
    return Env()


def ids(responses):
    return [r["member_id"] for r in responses]


# --- JoinGroup: member ids ------------------------------------------------------------------


@pytest.mark.parametrize("version", [4, 5])
def test_join_v4_plus_with_no_member_id_gets_member_id_required_then_rejoins(env, version):
    first = env.join(version=version)
    assert first.done
    response = first.value
    assert response["error_code"] == MEMBER_ID_REQUIRED
    member_id = response["member_id"]
    assert member_id.startswith("client-")
    assert response["generation_id"] == -1
    fits("JoinGroup", response)
    assert env.member_ids() == []  # a pending id is not a member yet

    again = env.join(member_id, version=version)
    assert not again.done  # the first rebalance waits for more members
    env.advance(DELAY)
    response = again.value
    assert response["error_code"] == NONE
    assert response["member_id"] == member_id
    assert response["leader"] == member_id
    assert response["generation_id"] == 1
    assert response["protocol_name"] == "range"
    assert response["members"] == [
        {"member_id": member_id, "group_instance_id": None, "metadata": b"range-meta"}
    ]
    fits("JoinGroup", response)


def test_each_member_id_required_hands_out_a_fresh_id(env):
    a = env.join(version=4).value["member_id"]
    b = env.join(version=4).value["member_id"]
    assert a != b


def test_an_unused_pending_member_id_expires_after_the_session_timeout(env):
    member_id = env.join(version=4, session=SESSION).value["member_id"]
    env.advance(SESSION / 1000)
    late = env.join(member_id, version=4)
    assert late.value["error_code"] == UNKNOWN_MEMBER_ID
    assert env.member_ids() == []
    assert env.coord.groups["g"].pending == {}


def test_a_pending_member_id_is_good_until_the_session_timeout(env):
    member_id = env.join(version=4, session=SESSION).value["member_id"]
    env.advance(SESSION / 1000 - 0.1)
    again = env.join(member_id, version=4)
    env.advance(DELAY)
    assert again.value["error_code"] == NONE
    assert again.value["member_id"] == member_id
    # the pending timer was cancelled: it does not fire later and disturb the member
    env.advance(1)
    assert env.member_ids() == [member_id]


@pytest.mark.parametrize("version", [0, 1, 2, 3])
def test_join_v0_to_v3_with_no_member_id_joins_directly(env, version):
    join = env.join(version=version, rebalance=-1 if version == 0 else REBALANCE)
    assert not join.done
    env.advance(DELAY)
    response = join.value
    assert response["error_code"] == NONE
    assert response["member_id"]
    assert response["generation_id"] == 1
    assert env.member_ids() == [response["member_id"]]


def test_join_with_an_unknown_member_id_is_refused_and_creates_no_group(env):
    assert env.join("nobody").value["error_code"] == UNKNOWN_MEMBER_ID
    assert env.coord.list() == []
    assert env.state() == "Dead"
    env.stable(1)
    assert env.join("nobody").value["error_code"] == UNKNOWN_MEMBER_ID
    assert len(env.member_ids()) == 1


def test_join_v0_uses_the_session_timeout_as_rebalance_timeout(env):
    a, b = env.stable(2, version=0, rebalance=-1, session=SESSION)
    assert env.coord.groups["g"].members[a["member_id"]].rebalance_timeout_ms == SESSION
    # a third member starts a rebalance; a rejoins, b stays alive but never rejoins
    c = env.join(version=0, rebalance=-1, session=SESSION, client_id="c3")
    rejoin = env.join(a["member_id"], version=0, rebalance=-1, session=SESSION)
    for _ in range(3):
        env.advance(3)
        assert env.heartbeat(b["member_id"], 1) == REBALANCE_IN_PROGRESS
    env.advance(SESSION / 1000 - 9 - 0.1)
    assert not rejoin.done and not c.done
    env.advance(0.1)  # the session timeout, not the 30 s of later versions' defaults
    assert rejoin.value["generation_id"] == 2
    assert {m["member_id"] for m in rejoin.value["members"]} == {
        a["member_id"],
        c.value["member_id"],
    }
    assert b["member_id"] not in env.member_ids()


# --- rebalances ------------------------------------------------------------------------------


def test_first_rebalance_waits_the_initial_delay_for_more_members(env):
    joins = []
    for i in range(3):
        joins.append(env.join(client_id=f"c{i}"))
        env.advance(0.9)
        assert not any(j.done for j in joins)
    env.advance(DELAY - 2.7 - 0.01)
    assert not any(j.done for j in joins)
    env.advance(0.01)
    responses = [j.value for j in joins]
    assert {r["generation_id"] for r in responses} == {1}
    assert {r["leader"] for r in responses} == {responses[0]["member_id"]}
    assert sorted(m["member_id"] for m in responses[0]["members"]) == sorted(ids(responses))
    assert env.state() == COMPLETING


def test_first_rebalance_with_no_initial_delay_completes_at_once():
    env = Env(initial_rebalance_delay_ms=0)
    join = env.join()
    env.advance(0)
    assert join.done and join.value["error_code"] == NONE
    assert join.value["generation_id"] == 1


def test_first_rebalance_waits_no_longer_than_the_rebalance_timeout(env):
    join = env.join(rebalance=1000)
    env.advance(1)
    assert join.value["generation_id"] == 1


def test_later_rebalance_completes_once_every_member_rejoined(env):
    a, b = env.stable(2)
    first = env.join(a["member_id"])
    assert not first.done
    assert env.heartbeat(b["member_id"], 1) == REBALANCE_IN_PROGRESS
    second = env.join(b["member_id"])
    assert first.done and second.done  # no clock advance: no delay after the first
    assert first.value["generation_id"] == second.value["generation_id"] == 2
    assert env.state() == COMPLETING


def test_member_not_rejoining_within_the_rebalance_timeout_is_removed(env):
    a, b, c = env.stable(3)
    start = env.clock.seconds()
    ra = env.join(a["member_id"])
    rb = env.join(b["member_id"])
    # c keeps its session alive with heartbeats but never rejoins
    while env.clock.seconds() - start < REBALANCE / 1000 - 3:
        env.advance(3)
        assert env.heartbeat(c["member_id"], 1) == REBALANCE_IN_PROGRESS
    env.advance(start + REBALANCE / 1000 - env.clock.seconds() - 0.01)
    assert not ra.done
    env.advance(0.01)
    assert ra.value["error_code"] == rb.value["error_code"] == NONE
    assert ra.value["generation_id"] == 2
    assert sorted(m["member_id"] for m in ra.value["members"]) == sorted(
        [a["member_id"], b["member_id"]]
    )
    assert c["member_id"] not in env.member_ids()
    assert env.heartbeat(c["member_id"], 2) == UNKNOWN_MEMBER_ID


def test_an_unchanged_rejoin_gets_the_current_generation_without_a_rebalance(env):
    a, b = env.form(2)
    assert env.state() == COMPLETING  # a follower that missed its answer asks again
    again = env.join(b["member_id"]).value
    assert (again["generation_id"], again["leader"], again["members"]) == (
        b["generation_id"],
        a["member_id"],
        [],
    )
    leader_again = env.join(a["member_id"]).value  # the leader gets every member again
    assert leader_again["members"] == a["members"]
    env.stabilize([a, b])
    again = env.join(b["member_id"]).value  # a stable follower, unchanged (as Kafka)
    assert again["generation_id"] == b["generation_id"] and env.state() == STABLE
    changed = env.join(b["member_id"], protocols=[("range", b"new-meta")])
    assert not changed.done and env.state() == PREPARING  # changed metadata: a rebalance
    env.join(a["member_id"])
    assert changed.value["generation_id"] == b["generation_id"] + 1


def test_a_stable_leader_joining_again_starts_a_rebalance(env):
    a, _b = env.stable(2)
    assert not env.join(a["member_id"]).done and env.state() == PREPARING


def test_a_repeated_join_during_a_rebalance_answers_the_first_one(env):
    a, b = env.stable(2)
    first = env.join(a["member_id"])
    second = env.join(a["member_id"])
    assert first.value["error_code"] == REBALANCE_IN_PROGRESS
    assert not second.done
    env.join(b["member_id"])
    assert second.value["generation_id"] == 2


# --- leader and protocols ----------------------------------------------------------------------


def test_leader_is_the_first_member_and_gets_everyones_metadata(env):
    joins = [
        env.join(protocols=[("range", f"meta-{i}".encode())], client_id=f"c{i}") for i in range(3)
    ]
    env.advance(DELAY)
    leader, *followers = [j.value for j in joins]
    assert leader["leader"] == leader["member_id"]
    assert {m["member_id"]: m["metadata"] for m in leader["members"]} == {
        r["member_id"]: f"meta-{i}".encode() for i, r in enumerate([leader, *followers])
    }
    for follower in followers:
        assert follower["leader"] == leader["member_id"]
        assert follower["members"] == []
        fits("JoinGroup", follower)
    fits("JoinGroup", leader)


def test_leader_keeps_leadership_while_it_stays(env):
    a, b, c = env.stable(3)
    assert env.leave(c["member_id"]) == NONE
    rb = env.join(b["member_id"])  # a follower rejoins first
    ra = env.join(a["member_id"])
    assert ra.value["leader"] == rb.value["leader"] == a["member_id"]
    assert ra.value["generation_id"] == 2
    assert len(ra.value["members"]) == 2 and rb.value["members"] == []
    env.stabilize([ra.value, rb.value])
    # the leader leaves: a remaining member takes over
    assert env.leave(a["member_id"]) == NONE
    rb = env.join(b["member_id"])
    assert rb.value["leader"] == b["member_id"]
    assert rb.value["generation_id"] == 3


@pytest.mark.parametrize(
    "offers, chosen",
    [
        ([["range", "roundrobin"], ["roundrobin"]], "roundrobin"),
        ([["roundrobin"], ["range", "roundrobin"]], "roundrobin"),
        ([["range", "roundrobin"], ["range", "roundrobin"]], "range"),
        ([["roundrobin", "range"], ["roundrobin", "range"], ["roundrobin", "range"]], "roundrobin"),
        ([["sticky", "range"], ["range", "sticky"], ["range", "sticky"]], "range"),
    ],
)
def test_protocol_vote(env, offers, chosen):
    joins = [
        env.join(protocols=[(name, f"{name}-{i}".encode()) for name in offer], client_id=f"c{i}")
        for i, offer in enumerate(offers)
    ]
    env.advance(DELAY)
    responses = [j.value for j in joins]
    assert {r["error_code"] for r in responses} == {NONE}
    assert {r["protocol_name"] for r in responses} == {chosen}
    assert sorted(m["metadata"] for m in responses[0]["members"]) == sorted(
        f"{chosen}-{i}".encode() for i in range(len(offers))
    )
    assert env.coord.describe("g")["protocol_data"] == chosen


def test_no_common_protocol_is_refused_and_does_not_disturb_the_group(env):
    a, b = env.stable(2)
    before = env.coord.describe("g")
    for version in (3, 4):
        bad = env.join(protocols=[("roundrobin", b"x")], version=version)
        assert bad.value["error_code"] == INCONSISTENT_GROUP_PROTOCOL
        fits("JoinGroup", bad.value)
    # an existing member switching to a protocol the others lack is refused too
    assert (
        env.join(b["member_id"], protocols=[("roundrobin", b"x")]).value["error_code"]
        == INCONSISTENT_GROUP_PROTOCOL
    )
    assert env.coord.describe("g") == before
    assert env.heartbeat(a["member_id"], 1) == env.heartbeat(b["member_id"], 1) == NONE
    assert env.coord.groups["g"].pending == {}


def test_different_protocol_type_is_refused(env):
    a, _ = env.stable(2)
    bad = env.join(protocol_type="connect")
    assert bad.value["error_code"] == INCONSISTENT_GROUP_PROTOCOL
    assert env.state() == STABLE and len(env.member_ids()) == 2
    assert env.heartbeat(a["member_id"], 1) == NONE


@pytest.mark.parametrize("protocols, protocol_type", [([], "consumer"), (RANGE, "")])
def test_empty_protocols_or_type_is_refused(env, protocols, protocol_type):
    bad = env.join(protocols=protocols, protocol_type=protocol_type)
    assert bad.value["error_code"] == INCONSISTENT_GROUP_PROTOCOL


@pytest.mark.parametrize("session", [999, 60_001, 0, -1])
def test_session_timeout_out_of_range_is_refused(env, session):
    for version in (0, 3, 4):
        bad = env.join(session=session, version=version)
        assert bad.value["error_code"] == INVALID_SESSION_TIMEOUT
        fits("JoinGroup", bad.value)
    assert env.coord.list() == []


def test_session_timeout_at_the_bounds_is_accepted(env):
    low = env.join(session=1000, group="low")
    high = env.join(session=60_000, group="high")
    env.advance(DELAY)
    assert low.value["error_code"] == high.value["error_code"] == NONE


# --- SyncGroup -------------------------------------------------------------------------------


def test_followers_wait_for_the_leader_then_get_their_own_assignment(env):
    a, b, c = env.form(3)
    sb = env.sync(b["member_id"], 1)
    sc = env.sync(c["member_id"], 1)
    assert not sb.done and not sc.done
    assert env.state() == COMPLETING
    sa = env.sync(
        a["member_id"],
        1,
        [(a["member_id"], b"for-a"), (b["member_id"], b"for-b"), ("stranger", b"dropped")],
    )
    assert sa.value == {"throttle_time_ms": 0, "error_code": NONE, "assignment": b"for-a"}
    assert sb.value["error_code"] == NONE and sb.value["assignment"] == b"for-b"
    assert sc.value["error_code"] == NONE and sc.value["assignment"] == b""  # left out
    for s in (sa, sb, sc):
        fits("SyncGroup", s.value)
    assert env.state() == STABLE
    assert env.member_ids() == ids([a, b, c])


def test_followers_assignments_are_ignored(env):
    a, b = env.form(2)
    sb = env.sync(b["member_id"], 1, [(a["member_id"], b"bogus"), (b["member_id"], b"bogus")])
    sa = env.sync(a["member_id"], 1, [(b["member_id"], b"real")])
    assert sb.value["assignment"] == b"real"
    assert sa.value["assignment"] == b""


def test_sync_before_join_or_from_unknown_member(env):
    assert env.sync("someone", 0).value["error_code"] == UNKNOWN_MEMBER_ID
    _a, _b = env.form(2)
    assert env.sync("someone", 1).value["error_code"] == UNKNOWN_MEMBER_ID
    assert env.sync("", 1).value["error_code"] == UNKNOWN_MEMBER_ID
    fits("SyncGroup", env.sync("someone", 1).value)
    assert env.state() == COMPLETING


def test_sync_with_a_stale_generation(env):
    a, b = env.stable(2)
    env.join(a["member_id"])
    rb = env.join(b["member_id"])
    assert rb.value["generation_id"] == 2
    assert env.sync(b["member_id"], 1).value["error_code"] == ILLEGAL_GENERATION
    assert env.sync(b["member_id"], 3).value["error_code"] == ILLEGAL_GENERATION
    assert env.state() == COMPLETING


def test_sync_while_preparing_a_rebalance(env):
    a, b = env.stable(2)
    env.join(a["member_id"])
    assert env.state() == PREPARING
    result = env.sync(b["member_id"], 1)
    assert result.value["error_code"] == REBALANCE_IN_PROGRESS
    fits("SyncGroup", result.value)


def test_pending_follower_syncs_get_rebalance_in_progress_when_a_rebalance_starts(env):
    a, b = env.form(2)
    sb = env.sync(b["member_id"], 1)
    assert not sb.done
    newcomer = env.join(client_id="late")
    assert sb.value["error_code"] == REBALANCE_IN_PROGRESS
    fits("SyncGroup", sb.value)
    assert env.state() == PREPARING
    ra, _rb = env.join(a["member_id"]), env.join(b["member_id"])
    assert newcomer.value["generation_id"] == ra.value["generation_id"] == 2
    assert len(ra.value["members"]) == 3


def test_sync_in_stable_returns_the_assignment_again(env):
    responses = env.stable(3)
    for r in responses:
        again = env.sync(r["member_id"], 1, [(r["member_id"], b"ignored")])
        assert again.value["error_code"] == NONE
        assert again.value["assignment"] == r["member_id"].encode()


def test_a_repeated_sync_while_waiting_for_the_leader_answers_both(env):
    a, b = env.form(2)
    first = env.sync(b["member_id"], 1)
    second = env.sync(b["member_id"], 1)
    env.sync(a["member_id"], 1, [(b["member_id"], b"for-b")])
    assert first.done and second.done
    assert second.value == {"throttle_time_ms": 0, "error_code": NONE, "assignment": b"for-b"}
    assert first.value["error_code"] in (NONE, REBALANCE_IN_PROGRESS)


def test_leader_gone_before_syncing_sends_followers_to_rejoin(env):
    a, b = env.form(2)
    sb = env.sync(b["member_id"], 1)
    assert env.leave(a["member_id"]) == NONE
    assert sb.value["error_code"] == REBALANCE_IN_PROGRESS
    rb = env.join(b["member_id"])
    assert rb.value["leader"] == b["member_id"] and rb.value["generation_id"] == 2


# --- Heartbeat -------------------------------------------------------------------------------


def test_heartbeat_errors(env):
    assert env.heartbeat("x", 0, group="nothing") == UNKNOWN_MEMBER_ID
    a, b = env.form(2)
    assert env.heartbeat(a["member_id"], 1) == NONE  # CompletingRebalance: fine
    env.stabilize([a, b])
    assert env.heartbeat(a["member_id"], 1) == NONE
    assert env.heartbeat(b["member_id"], 1) == NONE
    assert env.heartbeat("stranger", 1) == UNKNOWN_MEMBER_ID
    assert env.heartbeat(a["member_id"], 0) == ILLEGAL_GENERATION
    assert env.heartbeat(a["member_id"], 2) == ILLEGAL_GENERATION
    env.join(client_id="newcomer")
    assert env.heartbeat(a["member_id"], 1) == REBALANCE_IN_PROGRESS
    assert env.heartbeat(b["member_id"], 1) == REBALANCE_IN_PROGRESS


def test_heartbeats_keep_a_member_alive_past_its_session_timeout(env):
    (a,) = env.stable(1)
    for _ in range(20):
        env.advance(SESSION / 1000 - 1)
        assert env.heartbeat(a["member_id"], 1) == NONE
    assert env.member_ids() == [a["member_id"]] and env.state() == STABLE


def test_silence_removes_a_member_after_its_session_timeout_and_rebalances(env):
    a, b = env.stable(2)
    start = env.clock.seconds()
    while env.clock.seconds() - start < SESSION / 1000 - 3:
        env.advance(3)
        assert env.heartbeat(a["member_id"], 1) == NONE
    env.advance(start + SESSION / 1000 - env.clock.seconds() - 0.01)
    assert env.member_ids() == ids([a, b])
    env.advance(0.01)
    assert env.member_ids() == [a["member_id"]]
    assert env.state() == PREPARING
    assert env.heartbeat(a["member_id"], 1) == REBALANCE_IN_PROGRESS
    again = env.join(a["member_id"])
    assert again.value["generation_id"] == 2
    assert [m["member_id"] for m in again.value["members"]] == [a["member_id"]]
    assert env.heartbeat(b["member_id"], 2) == UNKNOWN_MEMBER_ID


def test_a_session_timer_lapsed_during_a_long_rebalance_is_rearmed(env):
    """Members waiting in a rebalance are not expired; once it completes they must be
    watched again, or one dying right after its JoinGroup response stays forever."""
    a, b = env.stable(2, session=6000, rebalance=60_000)
    newcomer = env.join(session=6000, rebalance=60_000, client_id="new")
    ra = env.join(a["member_id"], session=6000, rebalance=60_000)
    for _ in range(20):  # b stays alive but does not rejoin: the rebalance takes 60 s
        env.advance(3)
        env.heartbeat(b["member_id"], 1)
    env.advance(1)
    assert ra.value["generation_id"] == 2
    c = newcomer.value["member_id"]
    assert env.member_ids() == [a["member_id"], c]
    # the newcomer never syncs nor heartbeats; the leader does
    env.sync(a["member_id"], 2, [(a["member_id"], b"a"), (c, b"c")])
    for _ in range(4):
        env.advance(2)
        env.heartbeat(a["member_id"], 2)
    assert c not in env.member_ids()
    assert env.heartbeat(a["member_id"], 2) == REBALANCE_IN_PROGRESS


def test_a_follower_that_never_syncs_is_removed(env):
    a, _b = env.form(2)
    env.sync(a["member_id"], 1, [])
    for _ in range(6):
        env.advance(2)
        env.heartbeat(a["member_id"], 1)
    assert env.member_ids() == [a["member_id"]]


# --- LeaveGroup ------------------------------------------------------------------------------


def test_leave_removes_the_member_at_once_and_rebalances(env):
    a, b, c = env.stable(3)
    assert env.leave(b["member_id"]) == NONE
    assert env.member_ids() == [a["member_id"], c["member_id"]]
    assert env.state() == PREPARING
    assert env.heartbeat(a["member_id"], 1) == REBALANCE_IN_PROGRESS
    assert env.heartbeat(b["member_id"], 1) == UNKNOWN_MEMBER_ID
    ra, rc = env.join(a["member_id"]), env.join(c["member_id"])
    assert ra.value["generation_id"] == rc.value["generation_id"] == 2
    assert len(ra.value["members"]) == 2


def test_leave_of_a_member_waiting_in_a_rebalance_completes_it(env):
    a, b, c = env.stable(3)
    ra, _rb = env.join(a["member_id"]), env.join(b["member_id"])
    assert env.leave(c["member_id"]) == NONE
    assert ra.value["generation_id"] == 2 and len(ra.value["members"]) == 2
    # a member leaving while its own JoinGroup waits gets that JoinGroup answered
    ra2 = env.join(a["member_id"], protocols=[("range", b"new-meta")])  # changed: rebalance
    assert not ra2.done
    assert env.leave(a["member_id"]) == NONE
    assert ra2.value["error_code"] == UNKNOWN_MEMBER_ID
    fits("JoinGroup", ra2.value)


def test_leave_unknown_member(env):
    assert env.leave("x", group="nothing") == UNKNOWN_MEMBER_ID
    env.stable(1)
    assert env.leave("x") == UNKNOWN_MEMBER_ID
    assert env.leave("") == UNKNOWN_MEMBER_ID
    assert env.state() == STABLE


def test_last_member_leaving_empties_the_group_and_it_can_form_again(env):
    a, b = env.stable(2)
    assert env.leave(a["member_id"]) == NONE
    assert env.leave(b["member_id"]) == NONE
    assert env.state() == EMPTY
    described = env.coord.describe("g")
    assert described["members"] == [] and described["protocol_data"] == ""
    generation = env.coord.groups["g"].generation
    listed = [{"group_id": "g", "protocol_type": "consumer", "group_state": EMPTY}]
    assert env.coord.list() == listed
    assert env.coord.check_commit("g", -1, "") == NONE

    x, y = env.form(2, protocols=[("roundrobin", b"rr")])  # a new protocol is fine now
    assert x["generation_id"] == y["generation_id"] > generation
    assert x["leader"] == x["member_id"] and x["protocol_name"] == "roundrobin"
    env.stabilize([x, y])
    assert env.heartbeat(a["member_id"], x["generation_id"]) == UNKNOWN_MEMBER_ID


def test_leave_during_the_initial_delay(env):
    first = env.join()
    env.advance(1)
    second = env.join(client_id="second")
    member_id = env.member_ids()[0]
    assert env.leave(member_id) == NONE
    assert first.value["error_code"] == UNKNOWN_MEMBER_ID
    env.advance(DELAY)
    assert second.value["generation_id"] == 1
    assert second.value["leader"] == second.value["member_id"]
    assert env.member_ids() == [second.value["member_id"]]


# --- OffsetCommit checks -----------------------------------------------------------------------


def test_commit_outside_group_management(env):
    assert env.coord.check_commit("simple", -1, "") == NONE  # no such group
    assert env.coord.check_commit("simple", 0, "") == UNKNOWN_MEMBER_ID
    assert env.coord.check_commit("simple", 0, "m") == UNKNOWN_MEMBER_ID
    a, _ = env.stable(2)
    assert env.coord.check_commit("g", -1, "") == UNKNOWN_MEMBER_ID  # managed: members only
    assert env.coord.check_commit("g", 1, a["member_id"]) == NONE
    assert env.coord.check_commit("g", 0, a["member_id"]) == ILLEGAL_GENERATION
    assert env.coord.check_commit("g", -1, a["member_id"]) == ILLEGAL_GENERATION
    assert env.coord.check_commit("g", 1, "stranger") == UNKNOWN_MEMBER_ID


def test_commit_during_a_rebalance(env):
    a, b = env.form(2)
    # CompletingRebalance: the member has its new generation but no assignment yet
    assert env.coord.check_commit("g", 1, b["member_id"]) == REBALANCE_IN_PROGRESS
    env.stabilize([a, b])
    env.join(client_id="newcomer")
    assert env.state() == PREPARING
    # PreparingRebalance: like Kafka, members may still commit what they consumed in the
    # generation that ends (the Java consumer commits in onJoinPrepare, before rejoining)
    assert env.coord.check_commit("g", 1, b["member_id"]) == NONE
    assert env.coord.check_commit("g", 0, b["member_id"]) == ILLEGAL_GENERATION
    ra, _rb = env.join(a["member_id"]), env.join(b["member_id"])
    assert ra.value["generation_id"] == 2
    assert env.coord.check_commit("g", 2, b["member_id"]) == REBALANCE_IN_PROGRESS
    assert env.coord.check_commit("g", 1, b["member_id"]) == ILLEGAL_GENERATION


def test_a_good_commit_counts_as_a_sign_of_life(env):
    (a,) = env.stable(1)
    env.advance(8)
    assert env.coord.check_commit("g", 1, a["member_id"]) == NONE
    env.advance(SESSION / 1000 - 0.01)
    assert env.member_ids() == [a["member_id"]]
    env.advance(0.01)
    assert env.member_ids() == [] and env.state() == EMPTY


def test_a_refused_commit_is_not_a_sign_of_life(env):
    (a,) = env.stable(1)
    env.advance(8)
    assert env.coord.check_commit("g", 0, a["member_id"]) == ILLEGAL_GENERATION
    env.advance(2)
    assert env.member_ids() == []


# --- isolation -------------------------------------------------------------------------------


def timers_of(env, group_id):
    """The due times of the timers that belong to one group."""
    group = env.coord.groups[group_id]
    return sorted(
        c.getTime()
        for c in env.clock.getDelayedCalls()
        if any(a is group for a in c.args) or getattr(c.func, "__self__", None) is group.pending
    )


def test_errors_in_one_group_never_disturb_another(env):
    good = env.stable(2, group="good")
    before = env.coord.describe("good")
    timers = timers_of(env, "good")
    assert timers  # the members' session timers

    bad = env.join(group="bad", version=4).value["member_id"]
    env.sync(bad, 7, group="bad")
    env.sync(good[0]["member_id"], 1, group="bad")
    env.heartbeat(good[0]["member_id"], 1, group="bad")
    env.leave(good[1]["member_id"], group="bad")
    env.coord.check_commit("bad", 5, good[0]["member_id"])
    env.join(good[0]["member_id"], group="bad")
    env.join(group="bad", session=1)
    env.join(group="bad", protocols=[])
    env.join(group="bad", protocol_type="connect", protocols=[("x", b"")])
    x = env.join(group="bad", protocols=[("other", b"")], client_id="x")
    env.join(group="bad", protocols=[("nothing-common", b"")])
    env.advance(1)
    env.leave("nobody", group="bad")
    env.heartbeat("nobody", 1, group="bad")
    env.advance(DELAY)
    xid = x.value["member_id"]
    env.sync(xid, 99, group="bad")
    env.sync(xid, 1, [("ghost", b"")], group="bad")
    env.sync(xid, 1, group="bad")
    env.join(xid, group="bad", protocols=[("range", b"")])  # switches protocol: rebalances
    env.leave(xid, group="bad")

    assert env.coord.describe("good") == before
    assert timers_of(env, "good") == timers  # not even a session timer was touched
    for r in good:
        assert env.heartbeat(r["member_id"], 1, group="good") == NONE
        assert (
            env.sync(r["member_id"], 1, group="good").value["assignment"] == r["member_id"].encode()
        )


# --- DescribeGroups, ListGroups, close --------------------------------------------------------


def field_names(struct):
    return {f.name for f in struct.fields}


def field_type(struct, name):
    return next(f.type for f in struct.fields if f.name == name)


DESCRIBED_GROUP = field_type(API["DescribeGroups"].response, "groups").item
DESCRIBED_MEMBER = field_type(DESCRIBED_GROUP, "members").item
LISTED_GROUP = field_type(API["ListGroups"].response, "groups").item


def describe_fits(env, group="g"):
    """describe() of a group, checked against every DescribeGroups version; every field but
    authorized_operations (left to its "not requested" default) is filled in."""
    body = env.coord.describe(group)
    assert set(body) == field_names(DESCRIBED_GROUP) - {"authorized_operations"}
    for member in body["members"]:
        assert set(member) == field_names(DESCRIBED_MEMBER)
    fits("DescribeGroups", {"throttle_time_ms": 0, "groups": [body]})
    return body


def list_fits(env):
    listed = env.coord.list()
    assert all(set(entry) == field_names(LISTED_GROUP) for entry in listed)
    fits("ListGroups", {"throttle_time_ms": 0, "error_code": NONE, "groups": listed})
    return listed


def test_describe_and_list_fit_their_schemas_in_every_state(env):
    assert describe_fits(env, "nothing")["group_state"] == "Dead"
    assert list_fits(env) == []

    joins = [
        env.join(
            protocols=[("range", b"meta-a"), ("roundrobin", b"rr-a")], client_id="ca", instance=None
        ),
        env.join(protocols=[("range", b"meta-b")], client_id="cb", instance="instance-b"),
    ]
    body = describe_fits(env)
    assert body["group_state"] == PREPARING
    env.advance(DELAY)
    a, b = (j.value for j in joins)
    body = describe_fits(env)
    assert body["group_state"] == COMPLETING
    assert body["protocol_type"] == "consumer" and body["protocol_data"] == "range"
    assert [m["member_metadata"] for m in body["members"]] == [b"meta-a", b"meta-b"]
    assert [m["member_assignment"] for m in body["members"]] == [b"", b""]
    assert [m["group_instance_id"] for m in body["members"]] == [None, "instance-b"]
    assert [m["client_id"] for m in body["members"]] == ["ca", "cb"]
    assert [m["client_host"] for m in body["members"]] == ["/127.0.0.1"] * 2

    env.stabilize([a, b])
    body = describe_fits(env)
    assert body["group_state"] == STABLE
    assert [m["member_assignment"] for m in body["members"]] == [
        a["member_id"].encode(),
        b["member_id"].encode(),
    ]

    # a newcomer: described while preparing, no assignments shown
    env.join(protocols=[("range", b"meta-c")], client_id="cc")
    body = describe_fits(env)
    assert body["group_state"] == PREPARING
    assert [m["member_assignment"] for m in body["members"]] == [b"", b"", b""]

    env.stable(1, group="other", protocol_type="connect")
    listed = list_fits(env)
    assert sorted((g["group_id"], g["protocol_type"]) for g in listed) == [
        ("g", "consumer"),
        ("other", "connect"),
    ]

    for member_id in env.member_ids():
        env.leave(member_id)
    body = describe_fits(env)
    assert body["group_state"] == EMPTY and body["members"] == []


def test_describe_while_preparing_with_a_member_lacking_the_old_protocol(env):
    (a,) = env.stable(1, protocols=[("range", b"r"), ("roundrobin", b"rr")])
    assert env.coord.describe("g")["protocol_data"] == "range"
    env.join(protocols=[("roundrobin", b"rr-new")], client_id="new")
    body = describe_fits(env)  # must not raise: the newcomer has no "range" metadata
    assert body["group_state"] == PREPARING
    ra = env.join(a["member_id"], protocols=[("range", b"r"), ("roundrobin", b"rr")])
    assert ra.value["protocol_name"] == "roundrobin"
    body = describe_fits(env)
    assert [m["member_metadata"] for m in body["members"]] == [b"rr", b"rr-new"]


def test_close_cancels_every_timer(env):
    env.stable(2, group="stable")
    env.form(2, group="completing")
    env.join(group="preparing")
    env.join(group="pending", version=4)
    a, _b = env.stable(2, group="rebalancing")
    env.join(a["member_id"], group="rebalancing")
    assert env.clock.getDelayedCalls()
    env.coord.close()
    assert env.clock.getDelayedCalls() == []
    assert env.coord.list() == []
    env.advance(3600)  # nothing left to fire


# --- random sequences ----------------------------------------------------------------------------

GROUPS = ["ga", "gb"]
CLIENTS = [0, 1, 2]
PROTOCOL_OFFERS = [
    [("range", b"r")],
    [("range", b"r"), ("roundrobin", b"rr")],
    [("roundrobin", b"rr"), ("range", b"r")],
    [("roundrobin", b"rr")],
    [("sticky", b"s")],
]
group_st = st.sampled_from(GROUPS)
client_st = st.sampled_from(CLIENTS)
generation_st = st.sampled_from(["current", "current", "current", "stale", "none", "next"])
member_st = st.sampled_from(["own", "own", "own", "empty", "bogus", "other"])
step_st = st.tuples(st.just("step"), group_st, client_st)
round_st = st.tuples(st.just("round"), group_st)  # every client of a group steps

operation_st = st.one_of(
    # a well-behaved client's next move, so that groups do get to Stable ...
    step_st,
    step_st,
    round_st,
    round_st,
    round_st,
    # ... among requests of every kind, right or wrong, in any order
    st.tuples(
        st.just("join"),
        group_st,
        client_st,
        st.sampled_from([0, 1, 3, 4, 5]),
        st.sampled_from(PROTOCOL_OFFERS),
        member_st,
        st.sampled_from([6000, 6000, 10_000, 500]),
        st.sampled_from([-1, 3000, 20_000]),
        st.sampled_from(["consumer", "consumer", "consumer", "connect"]),
    ),
    st.tuples(st.just("sync"), group_st, client_st, generation_st, member_st, st.booleans()),
    st.tuples(st.just("heartbeat"), group_st, client_st, generation_st, member_st),
    st.tuples(st.just("leave"), group_st, client_st, member_st),
    st.tuples(st.just("commit"), group_st, client_st, generation_st, member_st),
    st.tuples(st.just("advance"), st.sampled_from([0, 0.5, 1, 1, 1, 2, 2, 3, 3, 5, 7, 25])),
    st.tuples(st.just("describe"), group_st),
)


class Fuzz:
    """Clients of two groups: "step" moves one as a Kafka consumer would (join, sync,
    heartbeat, rejoin on errors); the other operations are requests at random."""

    def __init__(self):
        self.env = Env(min_session_timeout_ms=1000, max_session_timeout_ms=30_000)
        self.coord = self.env.coord
        keys = [(g, c) for g in GROUPS for c in CLIENTS]
        self.member = dict.fromkeys(keys, "")
        self.generation = dict.fromkeys(keys, -1)
        self.members_seen = {k: [] for k in keys}
        self.needs_join = dict.fromkeys(keys, True)
        self.synced = dict.fromkeys(keys, False)
        self.waiting: dict[tuple[str, int], Result] = {}  # a step's JoinGroup/SyncGroup
        self.results: list[tuple[str, Result]] = []
        self.joined_generation: dict[tuple[str, str], int] = {}  # (group, member) -> gen
        self.leaders: dict[tuple[str, int], set[str]] = {}  # (group, gen) -> leaders
        # (group, gen) -> the member lists its leader was given (again, if it asked again)
        self.leader_responses: dict[tuple[str, int], set[tuple[str, ...]]] = {}
        self.last_generation = dict.fromkeys(GROUPS, 0)
        self.reached: set[str] = set()

    def member_id(self, group, client, which):
        return {
            "own": self.member[group, client],
            "empty": "",
            "bogus": "bogus-member",
            "other": self.member[group, (client + 1) % len(CLIENTS)],
        }[which]

    def generation_id(self, group, client, which):
        own = self.generation[group, client]
        return {"current": own, "stale": own - 1, "none": -1, "next": own + 1}[which]

    def on_join(self, response, group, client):
        fits("JoinGroup", response)
        code = response["error_code"]
        key = (group, client)
        if code == NONE:
            member_id, generation = response["member_id"], response["generation_id"]
            self.member[key] = member_id
            self.generation[key] = generation
            self.needs_join[key], self.synced[key] = False, False
            self.joined_generation[group, member_id] = generation
            self.leaders.setdefault((group, generation), set()).add(response["leader"])
            if response["members"]:
                assert response["leader"] == member_id
                self.leader_responses.setdefault((group, generation), set()).add(
                    tuple(m["member_id"] for m in response["members"])
                )
                self.members_seen[key] = [m["member_id"] for m in response["members"]]
                assert member_id in self.members_seen[key]
                assert all(
                    m["metadata"]
                    == dict(self.coord.groups[group].members[m["member_id"]].protocols)[
                        response["protocol_name"]
                    ]
                    for m in response["members"]
                    if m["member_id"] in self.coord.groups[group].members
                )
            else:
                assert response["leader"] != member_id
        else:
            self.needs_join[key] = True
            if code == MEMBER_ID_REQUIRED:
                self.member[key] = response["member_id"]
            elif code == UNKNOWN_MEMBER_ID:
                self.member[key] = ""
        return response

    def on_sync(self, response, group, client, generation):
        fits("SyncGroup", response)
        if generation == self.generation[group, client]:
            if response["error_code"] == NONE:
                self.synced[group, client] = True
                self.reached.add("synced")
            else:
                self.needs_join[group, client] = True
        return response

    def do_join(
        self,
        group,
        client,
        member_id,
        *,
        version=4,
        protocols=PROTOCOL_OFFERS[1],
        session=6000,
        rebalance=20_000,
        protocol_type="consumer",
    ):
        d = self.coord.join(
            group,
            member_id,
            None,
            protocol_type,
            protocols,
            session,
            rebalance,
            version=version,
            client_id=f"client{client}",
            client_host="/10.0.0.1",
        )
        d.addCallback(self.on_join, group, client)
        result = Result(d)
        self.results.append(("join", result))
        return result

    def do_sync(self, group, client, generation, member_id, assign):
        assignments = [(m, m.encode()) for m in self.members_seen[group, client]] if assign else []
        d = self.coord.sync(group, generation, member_id, assignments)
        d.addCallback(self.on_sync, group, client, generation)
        result = Result(d)
        self.results.append(("sync", result))
        return result

    def step(self, group, client):
        key = (group, client)
        waiting = self.waiting.get(key)
        member_id, generation = self.member[key], self.generation[key]
        if waiting is not None and not waiting.done:
            if member_id:  # the background heartbeat goes on while a request waits
                self.env.heartbeat(member_id, generation, group=group)
        elif self.needs_join[key]:
            self.waiting[key] = self.do_join(group, client, member_id)
        elif not self.synced[key]:
            self.waiting[key] = self.do_sync(group, client, generation, member_id, True)
        else:
            code = self.env.heartbeat(member_id, generation, group=group)
            if code != NONE:
                self.needs_join[key] = True
                if code == UNKNOWN_MEMBER_ID:
                    self.member[key] = ""

    def run(self, op):
        kind, rest = op[0], op[1:]
        if kind == "step":
            self.step(*rest)
        elif kind == "round":
            for client in CLIENTS:
                self.step(rest[0], client)
        elif kind == "join":
            group, client, version, protocols, which, session, rebalance, ptype = rest
            self.do_join(
                group,
                client,
                self.member_id(group, client, which),
                version=version,
                protocols=protocols,
                session=session,
                rebalance=rebalance,
                protocol_type=ptype,
            )
        elif kind == "sync":
            group, client, gen, which, assign = rest
            self.do_sync(
                group,
                client,
                self.generation_id(group, client, gen),
                self.member_id(group, client, which),
                assign,
            )
        elif kind == "heartbeat":
            group, client, gen, which = rest
            self.env.heartbeat(
                self.member_id(group, client, which),
                self.generation_id(group, client, gen),
                group=group,
            )
        elif kind == "leave":
            group, client, which = rest
            self.env.leave(self.member_id(group, client, which), group=group)
        elif kind == "commit":
            group, client, gen, which = rest
            code = self.coord.check_commit(
                group, self.generation_id(group, client, gen), self.member_id(group, client, which)
            )
            assert code in (NONE, ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, REBALANCE_IN_PROGRESS)
        elif kind == "advance":
            self.env.advance(rest[0])
        elif kind == "describe":
            describe_fits(self.env, rest[0])
            list_fits(self.env)
        self.check()

    def warm_up(self):
        """Rounds of well-behaved steps: both groups form and get to Stable."""
        for _ in range(4):
            for group in GROUPS:
                self.run(("round", group))
            self.run(("advance", 3))

    def check(self):
        for group_id in GROUPS:
            if group_id not in self.coord.groups:
                # An empty group forgotten after its time to live starts again from
                # generation 0 when someone joins it (its old member ids are unknown to it).
                self.last_generation[group_id] = 0
        for group_id, group in self.coord.groups.items():
            self.reached.add(group.state)
            assert group.generation >= self.last_generation[group_id]
            self.last_generation[group_id] = group.generation
            assert group.state in (EMPTY, PREPARING, COMPLETING, STABLE)
            assert (group.state == EMPTY) == (not group.members)
            if group.members:
                assert group.leader in group.members
            else:
                assert group.leader is None
            if group.state in (COMPLETING, STABLE):
                # every member took part in the rebalance that made this generation
                for member_id in group.members:
                    assert self.joined_generation.get((group_id, member_id)) == group.generation
                assert all(group.protocol in dict(m.protocols) for m in group.members.values())
            if group.state == STABLE:
                assert not any(m.syncing and not m.syncing.called for m in group.members.values())
            if group.state != PREPARING:
                assert not any(m.joining and not m.joining.called for m in group.members.values())
        for leaders in self.leaders.values():  # one leader per generation
            assert len(leaders) == 1
        # one set of members per generation, however often its leader asked
        assert all(len(lists) == 1 for lists in self.leader_responses.values())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.booleans(), st.lists(operation_st, min_size=1, max_size=80))
@example(  # group "ga" forgotten after its members expired, then joined again
    True,
    [
        ("advance", 3),
        ("advance", 25),
        ("advance", 25),
        ("step", "ga", 0),
        ("advance", 25),
        ("step", "ga", 0),
    ],
)
def test_random_sequences_keep_the_invariants(warm_up, operations):
    fuzz = Fuzz()
    if warm_up:  # start from two stable groups, or from nothing
        fuzz.warm_up()
    for op in operations:
        fuzz.run(op)
    # every Deferred handed out fires once time goes on: members expire, rebalances time out
    for _ in range(6):
        fuzz.env.advance(60)
        fuzz.check()
    for kind, result in fuzz.results:
        assert result.done, kind
        assert isinstance(result.value, dict)
    for group in fuzz.coord.groups.values():
        assert group.state == EMPTY and not group.members and not group.pending
    assert fuzz.env.clock.getDelayedCalls() == []
    fuzz.coord.close()
    assert fuzz.env.clock.getDelayedCalls() == []


def test_well_behaved_clients_of_two_groups_reach_stable():
    """The random test's "step" client is a faithful one: steps alone stabilize groups."""
    fuzz = Fuzz()
    fuzz.warm_up()
    assert {fuzz.coord.describe(g)["group_state"] for g in GROUPS} == {STABLE}
    assert all(len(fuzz.coord.groups[g].members) == 3 for g in GROUPS)
    for _ in range(10):  # steps keep them alive and stable
        for group in GROUPS:
            fuzz.run(("round", group))
        fuzz.run(("advance", 2))
    assert {fuzz.coord.describe(g)["group_state"] for g in GROUPS} == {STABLE}
    assert {fuzz.coord.groups[g].generation for g in GROUPS} == {1}


def test_empty_groups_are_forgotten_after_a_while():
    """One-off group ids do not pile up: an empty group (or one made only by a JoinGroup that
    got MEMBER_ID_REQUIRED) is gone EMPTY_GROUP_TTL after it became empty."""
    from broker.groups import EMPTY_GROUP_TTL

    clock = Clock()
    coordinator = GroupCoordinator(clock, initial_rebalance_delay_ms=0)
    answers = []
    coordinator.join(
        "probe", "", None, "consumer", [("range", b"")], 6000, 6000, version=5
    ).addCallback(answers.append)
    assert answers[0]["error_code"] == 79
    clock.advance(6.1)
    clock.advance(EMPTY_GROUP_TTL)
    assert coordinator.list() == []
    coordinator.join(
        "g", "", None, "consumer", [("range", b"")], 6000, 6000, version=3
    ).addCallback(answers.append)
    member = answers[-1]["member_id"]
    assert coordinator.leave("g", member)["error_code"] == 0
    assert coordinator.describe("g")["group_state"] == "Empty"
    clock.advance(EMPTY_GROUP_TTL + 1)
    assert coordinator.describe("g")["group_state"] == "Dead" and coordinator.list() == []
