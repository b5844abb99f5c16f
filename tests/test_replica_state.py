"""The leader's view of a partition (broker/replica/state.py): Kafka's rules for caught-up
followers, ISR shrink and expand, and the high watermark."""

from __future__ import annotations

import pytest

from broker.replica.state import LeaderState, NotAssignedReplicaError, NotLeaderOrFollowerError

LAG_MS = 10_000


def leader(isr=(1, 2, 3), replicas=(1, 2, 3), leo=100, hw=100, now=0, epoch=5) -> LeaderState:
    state = LeaderState("clicks", 0, local_id=1)
    state.become_leader(epoch, isr, replicas, leo=leo, hw=hw, now_ms=now)
    return state


def test_high_watermark_is_the_smallest_log_end_of_the_isr():
    state = leader()
    assert state.leader_appended(110) is False  # followers' log ends are unknown: hw holds
    assert state.follower_fetched(2, 110, 110, now_ms=1) is False  # 3 has not fetched
    assert state.high_watermark == 100
    assert state.follower_fetched(3, 105, 110, now_ms=2) is True
    assert state.high_watermark == 105
    assert state.follower_fetched(3, 110, 110, now_ms=3) is True
    assert state.high_watermark == 110


def test_an_isr_of_the_leader_alone_moves_the_high_watermark_on_append():
    state = leader(isr=(1,), replicas=(1, 2))
    assert state.leader_appended(130) is True
    assert state.high_watermark == 130
    state.follower_fetched(2, 0, 130, now_ms=1)  # out of the ISR: does not hold it back
    assert state.high_watermark == 130


def test_high_watermark_never_moves_back_while_leading():
    state = leader(isr=(1, 2), replicas=(1, 2, 3))
    state.follower_fetched(2, 100, 100, now_ms=1)
    assert state.high_watermark == 100
    state.apply_isr({1, 2, 3})  # 3 joins with a log end behind the hw (it cannot, but say so)
    state.follower_fetched(3, 90, 100, now_ms=2)
    assert state.high_watermark == 100


def test_a_shrunk_isr_can_move_the_high_watermark():
    state = leader()
    state.leader_appended(120)
    state.follower_fetched(2, 120, 120, now_ms=1)
    state.follower_fetched(3, 100, 120, now_ms=1)
    assert state.high_watermark == 100
    assert state.apply_isr({1, 2}) is True
    assert state.high_watermark == 120


def test_a_follower_is_caught_up_at_a_fetch_reaching_the_leaders_end_at_its_previous_fetch():
    state = leader(isr=(1, 2), replicas=(1, 2))
    progress = state.followers[2]
    state.leader_appended(110)
    state.follower_fetched(2, 100, 110, now_ms=1_000)  # behind now; leader's end then: 110
    assert progress.last_caught_up_ms == 0  # as of becoming leader, not of this fetch
    state.leader_appended(120)
    state.follower_fetched(2, 110, 120, now_ms=2_000)  # reached 110: caught up as of 1_000
    assert progress.last_caught_up_ms == 1_000
    state.follower_fetched(2, 120, 120, now_ms=3_000)  # reached the end: caught up now
    assert progress.last_caught_up_ms == 3_000


def test_a_follower_behind_for_longer_than_the_lag_time_is_a_shrink_candidate():
    state = leader(isr=(1, 2, 3), now=0)
    state.leader_appended(110)
    state.follower_fetched(2, 110, 110, now_ms=5_000)
    state.follower_fetched(3, 100, 110, now_ms=5_000)  # fetching, never catching up
    assert state.shrink_candidates(now_ms=LAG_MS, lag_ms=LAG_MS) == set()
    assert state.shrink_candidates(now_ms=LAG_MS + 1, lag_ms=LAG_MS) == {3}


def test_an_idle_follower_at_the_leaders_end_stays_in_sync():
    state = leader(isr=(1, 2), replicas=(1, 2))
    state.follower_fetched(2, 100, 100, now_ms=0)
    # no appends, no fetches for a long time: its log end is the leader's, lag by time ignored
    assert state.shrink_candidates(now_ms=10 * LAG_MS, lag_ms=LAG_MS) == set()


def test_a_follower_that_never_fetched_after_a_leader_change_is_dropped_after_the_lag():
    state = leader(isr=(1, 2), replicas=(1, 2), now=1_000)
    assert state.shrink_candidates(now_ms=1_000 + LAG_MS, lag_ms=LAG_MS) == set()
    assert state.shrink_candidates(now_ms=1_001 + LAG_MS, lag_ms=LAG_MS) == {2}


def test_expand_needs_the_high_watermark_and_the_start_of_the_leaders_epoch():
    state = leader(isr=(1, 3), replicas=(1, 2, 3), leo=100, hw=80)
    assert state.high_watermark == 80  # 3 has not fetched since the leader change
    state.follower_fetched(2, 90, 100, now_ms=1)  # >= hw 80 but < epoch start 100
    assert state.expand_candidate(2) is False
    state.follower_fetched(2, 100, 100, now_ms=2)
    assert state.expand_candidate(2) is True
    state.apply_isr({1, 2, 3})
    assert state.expand_candidate(2) is False  # already in
    assert state.expand_candidate(7) is False  # not a replica


def test_a_new_epoch_forgets_the_followers_progress_and_the_same_epoch_keeps_it():
    state = leader(isr=(1, 2), replicas=(1, 2, 3), now=0)
    state.follower_fetched(2, 100, 100, now_ms=10)
    state.follower_fetched(3, 50, 100, now_ms=10)
    state.become_leader(5, {1, 2}, [1, 2, 3], leo=100, hw=100, now_ms=20)  # same epoch
    assert state.followers[3].log_end_offset == 50
    state.become_leader(6, {1, 2}, [1, 2, 3], leo=100, hw=100, now_ms=30)
    assert state.followers[2].log_end_offset == -1
    assert state.followers[2].last_caught_up_ms == 30  # in the ISR: caught up as of now
    assert state.followers[3].last_caught_up_ms == 0  # out of it: never
    assert state.epoch_start_offset == 100 and state.leader_epoch == 6


def test_min_insync_replicas_check():
    state = leader(isr=(1, 2), replicas=(1, 2, 3))
    assert state.enough_replicas(2) and not state.enough_replicas(3)
    assert state.under_replicated


def test_a_fetch_from_a_broker_not_assigned_or_to_a_follower_is_refused():
    state = leader(replicas=(1, 2, 3))
    with pytest.raises(NotAssignedReplicaError) as info:
        state.follower_fetched(9, 0, 100, now_ms=0)
    assert info.value.code == 9
    state.become_follower()
    with pytest.raises(NotLeaderOrFollowerError):
        state.follower_fetched(2, 0, 100, now_ms=0)
    assert state.shrink_candidates(0, LAG_MS) == set()
