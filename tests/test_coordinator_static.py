"""Static group membership (KIP-345) in the coordinator's state machine, without sockets, as
Kafka's GroupCoordinator serves it: a known ``group.instance.id`` back under no member id
takes its old self's place (assignment, leadership) without a rebalance in a stable group,
the old member id is fenced on every request that names the instance, a static member that
does not rejoin in a rebalance stays until its session timeout removes it, LeaveGroup by
instance id, OffsetCommit's instance check, DescribeGroups' instance ids and JoinGroup v9's
skip_assignment for a returning static leader."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_coordinator_state_machine import (
    COMPLETING,
    DELAY,
    EMPTY,
    PREPARING,
    RANGE,
    REBALANCE,
    SESSION,
    STABLE,
    Env,
    Result,
    fits,
)

NONE = 0
ILLEGAL_GENERATION = 22
UNKNOWN_MEMBER_ID = 25
REBALANCE_IN_PROGRESS = 27
MEMBER_ID_REQUIRED = 79
FENCED_INSTANCE_ID = 82


@pytest.fixture
def env():
    return Env()


def form_static(env, instances, *, version=5, **kw):
    """Members with ``instances`` (None: dynamic) form group "g" and sync; returns their
    JoinGroup responses, in join order.  Each member's assignment is its instance id (or
    client id)."""
    joins = [
        env.join(version=3 if i is None else version, instance=i, client_id=f"c{n}", **kw)
        for n, i in enumerate(instances)
    ]
    env.advance(DELAY)
    responses = [j.value for j in joins]
    assert all(r["error_code"] == NONE for r in responses)
    leader = next(r for r in responses if r["leader"] == r["member_id"])
    assert [m["group_instance_id"] for m in leader["members"]] == list(instances)
    given = [
        (r["member_id"], (i or f"c{n}").encode())
        for n, (r, i) in enumerate(zip(responses, instances, strict=True))
    ]
    syncs = [
        sync(env, r["member_id"], r["generation_id"], i, given if r is leader else [])
        for r, i in zip(responses, instances, strict=True)
        if r is not leader
    ]
    syncs.append(sync(env, leader["member_id"], leader["generation_id"], _instance(leader), given))
    assert all(s.value["error_code"] == NONE for s in syncs)
    assert env.state() == STABLE
    return responses


def _instance(response):
    return next(
        (
            m["group_instance_id"]
            for m in response["members"]
            if m["member_id"] == response["member_id"]
        ),
        None,
    )


def sync(env, member_id, generation, instance, assignments=()) -> Result:
    return Result(
        env.coord.sync("g", generation, member_id, list(assignments), group_instance_id=instance)
    )


def heartbeat(env, member_id, generation, instance) -> int:
    response = env.coord.heartbeat("g", generation, member_id, instance)
    fits("Heartbeat", response)
    return response["error_code"]


def rejoin(env, instance, *, version=5, protocols=None, session=SESSION) -> Result:
    """A restarted static member's first JoinGroup: no member id."""
    kw = {} if protocols is None else {"protocols": protocols}
    result = env.join(version=version, instance=instance, session=session, **kw)
    return result


# --- joining -----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [5, 7, 9])
def test_a_static_member_joins_without_member_id_required(env, version):
    joined = env.join(version=version, instance="host-1")
    env.advance(DELAY)
    response = joined.value
    assert response["error_code"] == NONE  # no MEMBER_ID_REQUIRED round trip
    assert response["member_id"].startswith("host-1-")
    assert response["members"] == [
        {
            "member_id": response["member_id"],
            "group_instance_id": "host-1",
            "metadata": b"range-meta",
        }
    ]
    described = env.coord.describe("g")["members"]
    assert [(m["member_id"], m["group_instance_id"]) for m in described] == [
        (response["member_id"], "host-1")
    ]


def test_a_dynamic_member_still_gets_member_id_required(env):
    assert env.join(version=5).value["error_code"] == MEMBER_ID_REQUIRED


# --- a restart within the session timeout --------------------------------------------------


def test_a_restarted_follower_takes_its_place_without_a_rebalance(env):
    a, b = form_static(env, ["host-a", "host-b"])
    generation = a["generation_id"]
    back = rejoin(env, "host-b").value
    assert back["error_code"] == NONE
    assert back["member_id"] != b["member_id"] and back["member_id"].startswith("host-b-")
    assert back["generation_id"] == generation  # the same generation: no rebalance
    assert back["leader"] == a["member_id"] and back["members"] == []
    assert env.state() == STABLE
    assert heartbeat(env, a["member_id"], generation, "host-a") == NONE  # a sees nothing
    # its SyncGroup gets the assignment its old self had
    got = sync(env, back["member_id"], generation, "host-b").value
    assert got == {"throttle_time_ms": 0, "error_code": NONE, "assignment": b"host-b"}
    assert sorted(env.member_ids()) == sorted([a["member_id"], back["member_id"]])


def test_the_old_member_id_is_fenced_on_heartbeat_sync_commit_and_join(env):
    _a, b = form_static(env, ["host-a", "host-b"])
    old, generation = b["member_id"], b["generation_id"]
    assert rejoin(env, "host-b").value["error_code"] == NONE
    assert heartbeat(env, old, generation, "host-b") == FENCED_INSTANCE_ID
    assert sync(env, old, generation, "host-b").value["error_code"] == FENCED_INSTANCE_ID
    assert env.coord.check_commit("g", generation, old, "host-b") == FENCED_INSTANCE_ID
    assert env.join(old, version=5, instance="host-b").value["error_code"] == FENCED_INSTANCE_ID
    assert env.coord.leave("g", old, "host-b")["error_code"] == FENCED_INSTANCE_ID
    # without its instance id (Heartbeat v0-2) the old id is simply gone
    assert heartbeat(env, old, generation, None) == UNKNOWN_MEMBER_ID
    assert env.state() == STABLE and len(env.member_ids()) == 2


def test_a_waiting_request_of_the_old_member_id_is_answered_fenced(env):
    a, b, c = form_static(env, ["host-a", "host-b", None])
    env.join(a["member_id"], version=5, instance="host-a")  # the leader rejoins: a rebalance
    assert env.state() == PREPARING
    waiting = env.join(b["member_id"], version=5, instance="host-b")
    assert not waiting.done  # c has not rejoined yet
    back = rejoin(env, "host-b")
    assert waiting.value["error_code"] == FENCED_INSTANCE_ID
    assert not back.done
    env.join(c["member_id"])
    assert back.value["error_code"] == NONE  # the rebalance completed with the new id
    assert back.value["generation_id"] == a["generation_id"] + 1


def test_a_restarted_leader_below_v9_is_not_told_it_leads(env):
    a, _b = form_static(env, ["host-a", "host-b"])
    back = rejoin(env, "host-a", version=8).value
    assert back["error_code"] == NONE and env.state() == STABLE
    assert back["leader"] == a["member_id"] != back["member_id"]  # the old id, as Kafka says
    assert back["members"] == [] and back["skip_assignment"] is False
    assert env.coord.describe("g")["members"][-1]["member_id"] == back["member_id"]
    assert env.coord.groups["g"].leader == back["member_id"]
    got = sync(env, back["member_id"], back["generation_id"], "host-a").value
    assert got["assignment"] == b"host-a"


def test_a_restarted_leader_at_v9_leads_and_skips_the_assignment(env):
    _a, b = form_static(env, ["host-a", "host-b"], version=9)
    back = rejoin(env, "host-a", version=9).value
    fits("JoinGroup", back)
    assert back["error_code"] == NONE and env.state() == STABLE
    assert back["leader"] == back["member_id"] and back["skip_assignment"] is True
    assert {(m["member_id"], m["group_instance_id"]) for m in back["members"]} == {
        (back["member_id"], "host-a"),
        (b["member_id"], "host-b"),
    }
    # a follower back at v9 is not told to skip anything
    follower = rejoin(env, "host-b", version=9).value
    assert follower["skip_assignment"] is False and follower["members"] == []
    assert follower["leader"] == back["member_id"]


def test_a_restart_whose_protocols_change_the_vote_is_a_rebalance(env):
    both = [("range", b"r"), ("roundrobin", b"rr")]
    a, _b = form_static(env, ["host-a", "host-b"], protocols=both)
    same = rejoin(env, "host-b", protocols=[("roundrobin", b"rr"), ("range", b"r")]).value
    assert same["generation_id"] == a["generation_id"]  # a tie: still range, no rebalance
    back = rejoin(env, "host-b", protocols=[("roundrobin", b"rr")])
    assert not back.done and env.state() == PREPARING  # the vote changes: a rebalance
    assert heartbeat(env, a["member_id"], a["generation_id"], "host-a") == REBALANCE_IN_PROGRESS
    env.join(a["member_id"], version=5, instance="host-a", protocols=both)
    assert back.value["error_code"] == NONE and back.value["protocol_name"] == "roundrobin"
    assert back.value["generation_id"] == a["generation_id"] + 1


def test_a_restart_while_completing_a_rebalance_starts_another(env):
    joins = [env.join(version=5, instance=i) for i in ("host-a", "host-b")]
    env.advance(DELAY)
    first = [j.value for j in joins]
    assert env.state() == COMPLETING
    back = rejoin(env, "host-b")
    assert env.state() == PREPARING and not back.done
    env.join(first[0]["member_id"], version=5, instance="host-a")
    assert back.value["generation_id"] == first[0]["generation_id"] + 1


# --- absence and the session timeout -------------------------------------------------------


def test_a_static_member_that_does_not_rejoin_stays_in_the_rebalance(env):
    # sessions longer than a rebalance, so that b's outlives the rebalance timeout
    a, b, c = form_static(env, ["host-a", "host-b", None], session=20_000, rebalance=5000)
    # a rebalance starts (c's leave); the static b stays silent, a rejoins
    assert env.leave(c["member_id"]) == NONE
    joined = env.join(a["member_id"], version=5, instance="host-a", session=20_000, rebalance=5000)
    env.advance(5)  # the rebalance timeout: b did not rejoin
    response = joined.value
    assert response["error_code"] == NONE
    assert sorted(m["member_id"] for m in response["members"]) == sorted(
        [a["member_id"], b["member_id"]]
    )  # b is kept, and the leader assigns it partitions
    assert env.state() == COMPLETING and b["member_id"] in env.member_ids()


def test_a_dynamic_member_that_does_not_rejoin_is_removed_as_before(env):
    a, _b = form_static(env, ["host-a", None])
    env.join(a["member_id"], version=5, instance="host-a")
    env.advance(REBALANCE / 1000)
    assert env.member_ids() == [a["member_id"]]


def test_a_static_member_away_past_its_session_timeout_is_removed(env):
    a, b = form_static(env, ["host-a", "host-b"])
    for _ in range(int(SESSION / 1000) + 1):  # a heartbeats, b is away
        env.advance(1)
        code = heartbeat(env, a["member_id"], a["generation_id"], "host-a")
        assert code in (NONE, REBALANCE_IN_PROGRESS)
    assert env.state() == PREPARING and b["member_id"] not in env.member_ids()
    joined = env.join(a["member_id"], version=5, instance="host-a")
    assert joined.value["error_code"] == NONE and env.member_ids() == [a["member_id"]]
    # back later, it is a newcomer: a new member and a rebalance
    back = rejoin(env, "host-b")
    assert not back.done and env.state() == PREPARING


def test_only_absent_static_members_postpone_the_rebalance_until_their_sessions_end(env):
    a, _b = form_static(env, ["host-a", "host-b"])
    env.advance(SESSION / 1000 - 1)
    assert heartbeat(env, a["member_id"], a["generation_id"], "host-a") == NONE
    env.advance(1.5)  # b's session ends: a rebalance in which a never rejoins
    assert env.state() == PREPARING and env.member_ids() == [a["member_id"]]
    env.advance(REBALANCE / 1000)
    assert env.state() in (PREPARING, EMPTY)
    env.advance(REBALANCE / 1000)
    assert env.state() == EMPTY and env.member_ids() == []
    assert env.coord.groups["g"].static_members == {}


# --- LeaveGroup, OffsetCommit ----------------------------------------------------------------


def test_leave_by_instance_id_alone_removes_the_static_member(env):
    a, _b = form_static(env, ["host-a", "host-b"])
    assert env.coord.leave("g", "", "host-b")["error_code"] == NONE
    assert env.member_ids() == [a["member_id"]] and env.state() == PREPARING
    assert env.coord.leave("g", "", "host-b")["error_code"] == UNKNOWN_MEMBER_ID
    assert env.coord.leave("g", "", "nobody")["error_code"] == UNKNOWN_MEMBER_ID
    assert env.coord.leave("nogroup", "", "host-b")["error_code"] == UNKNOWN_MEMBER_ID


def test_leave_by_member_and_instance_id(env):
    a, b = form_static(env, ["host-a", "host-b"])
    assert env.coord.leave("g", a["member_id"], "host-b")["error_code"] == FENCED_INSTANCE_ID
    assert env.coord.leave("g", b["member_id"], "host-b")["error_code"] == NONE
    assert env.member_ids() == [a["member_id"]]


def test_commit_checks_the_instance_id(env):
    a, _b = form_static(env, ["host-a", "host-b"])
    generation = a["generation_id"]
    assert env.coord.check_commit("g", generation, a["member_id"], "host-a") == NONE
    assert env.coord.check_commit("g", generation, a["member_id"], None) == NONE
    assert env.coord.check_commit("g", generation, a["member_id"], "host-b") == FENCED_INSTANCE_ID
    assert env.coord.check_commit("g", generation, a["member_id"], "other") == UNKNOWN_MEMBER_ID
    assert (
        env.coord.check_commit("g", generation + 1, a["member_id"], "host-a") == ILLEGAL_GENERATION
    )
    # generation -1 with an instance id is a member's commit, not a tool's
    assert env.coord.check_commit("g", -1, "", "host-a") == FENCED_INSTANCE_ID
    assert env.coord.check_commit("empty-group", -1, "", "host-a") == UNKNOWN_MEMBER_ID


# --- random sequences --------------------------------------------------------------------------

INSTANCES = ["host-a", "host-b", None]  # two static members and a dynamic one
static_op = st.one_of(
    st.tuples(st.just("join"), st.sampled_from(INSTANCES), st.sampled_from(["own", "new", "old"])),
    st.tuples(st.just("sync"), st.sampled_from(INSTANCES), st.sampled_from(["own", "old"])),
    st.tuples(st.just("heartbeat"), st.sampled_from(INSTANCES), st.sampled_from(["own", "old"])),
    st.tuples(st.just("leave"), st.sampled_from(INSTANCES), st.sampled_from(["own", "instance"])),
    st.tuples(st.just("advance"), st.sampled_from([0.5, 1, 3, 7])),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(static_op, max_size=40))
def test_random_static_sequences_keep_the_mapping_true(operations):
    """Restarts, fenced requests, leaves by instance id and silence in any order: the
    instance map always names exactly the static members, every answer fits its schema, and
    once everyone is gone every request that waited was answered."""
    env = Env()
    current = dict.fromkeys(INSTANCES, "")  # each client's member id as it knows it
    old = dict.fromkeys(INSTANCES, "")  # the id it had before its last restart
    generation = dict.fromkeys(INSTANCES, -1)
    results = []

    def joined(response, instance):
        fits("JoinGroup", response)
        if response["error_code"] in (NONE, MEMBER_ID_REQUIRED):
            current[instance] = response["member_id"]
            generation[instance] = response["generation_id"]
        return response

    for op in operations:
        kind, instance, which = (*op, None)[:3]
        member = {"own": current, "old": old}.get(which, current).get(instance, "")
        if kind == "join":
            if which == "new":
                old[instance], member = current[instance], ""
            d = env.coord.join("g", member, instance, "consumer", RANGE, SESSION, 5000, version=9)
            results.append(Result(d.addCallback(joined, instance)))
        elif kind == "sync":
            result = sync(env, member, generation[instance], instance)
            results.append(result)
        elif kind == "heartbeat":
            heartbeat(env, member, generation[instance], instance)
        elif kind == "leave":
            member = "" if which == "instance" and instance else member
            fits("LeaveGroup", env.coord.leave("g", member, instance))
        else:
            env.advance(op[1])
        group = env.coord.groups.get("g")
        if group is None:
            continue
        static = {m.group_instance_id: mid for mid, m in group.members.items()}
        static.pop(None, None)
        assert group.static_members == static
        assert (group.state == EMPTY) == (not group.members)
        assert group.leader in group.members or (group.leader is None and not group.members)
    for _ in range(int(SESSION / 1000 + 2 * REBALANCE / 1000)):  # everyone falls silent
        env.advance(1)  # (in steps: timers set while the clock jumps count from its end)
    assert env.state() in (EMPTY, "Dead")
    assert all(r.done for r in results)
