"""Which input topics the evaluator holds back (streams/evaluator/pacing.py), hand-checked.

The policy must bound the join buffer without ever stopping all reading: the topic with the
oldest last record is never held, a topic read to its end never holds the others back, and
the bound has hysteresis (hold above it, release everything at half of it).
"""

from __future__ import annotations

import itertools

import pytest

from streams.evaluator.pacing import SLACK_MS, topics_to_hold

R, T, S = "requests", "teacher", "student"
ALL = (R, T, S)


def test_nothing_is_held_under_the_bound_or_with_pacing_off() -> None:
    ts = {R: 90_000, T: 10_000, S: 10_000}
    assert topics_to_hold(5000, 5000, set(), ts, ALL) == set()  # at the bound, not over it
    assert topics_to_hold(10**6, 0, set(), ts, ALL) == set()    # limit 0: off


def test_over_the_bound_the_topics_ahead_of_the_oldest_are_held() -> None:
    # requests read up to 90 s, the answers up to 10 s: requests wait for answers
    assert topics_to_hold(5001, 5000, set(), {R: 90_000, T: 10_000, S: 10_000}, ALL) == {R}
    # the student is behind too, but within the slack of the teacher: only requests held
    assert topics_to_hold(6000, 5000, set(), {R: 90_000, T: 10_000 + SLACK_MS, S: 10_000}, ALL) == {R}
    # answers ahead of their requests (the mirror lags): both answer topics held
    assert topics_to_hold(6000, 5000, set(), {R: 10_000, T: 50_000, S: 40_000}, ALL) == {T, S}


def test_hysteresis_between_half_the_bound_and_the_bound() -> None:
    ts = {R: 90_000, T: 10_000, S: 10_000}
    assert topics_to_hold(4000, 5000, {R}, ts, ALL) == {R}      # still over half: stays held
    assert topics_to_hold(4000, 5000, set(), ts, ALL) == set()  # nothing new held under the bound
    assert topics_to_hold(2500, 5000, {R}, ts, ALL) == set()    # at half: everything resumes
    # over half, but the answers caught up in time: released
    assert topics_to_hold(4000, 5000, {R}, {R: 90_000, T: 89_500, S: 90_000}, ALL) == set()


def test_a_topic_read_to_its_end_does_not_hold_the_others_back() -> None:
    # the teacher worker is down: its topic has nothing more, requests and students go on
    ts = {R: 90_000, T: 10_000, S: 89_000}
    assert topics_to_hold(9000, 5000, set(), ts, (R, S)) == set()
    assert topics_to_hold(9000, 5000, {R}, ts, (R, S)) == set()
    assert topics_to_hold(9000, 5000, {R}, ts, ()) == set()


def test_a_topic_read_to_its_end_is_held_while_ahead() -> None:
    """Live, the requests topic is read to its end most of the time while the answers lag:
    what arrives next on it would run ahead too, so it is held until the answers catch up."""
    ts = {R: 90_000, T: 10_000, S: 12_000}
    assert topics_to_hold(9000, 5000, set(), ts, (T, S)) == {R, S}
    assert topics_to_hold(9000, 5000, {R, S}, {R: 90_000, T: 89_800, S: 90_000}, (T, S)) == set()


def test_a_topic_with_records_none_read_yet_is_the_oldest() -> None:
    assert topics_to_hold(9000, 5000, set(), {R: 90_000, S: 80_000}, ALL) == {R, S}


@pytest.mark.parametrize("r,t,s", list(itertools.product([0, 5_000, 60_000], repeat=3)))
def test_never_all_topics_with_more_to_read_are_held(r: int, t: int, s: int) -> None:
    """Whatever the timestamps and whichever topics are held, one with records left to read
    stays readable, so the join buffer always drains."""
    for held in ({}, {R}, {T, S}, {R, T, S}):
        for more in (ALL, (R, T), (S,)):
            hold = topics_to_hold(10**6, 5000, set(held), {R: r, T: t, S: s}, more)
            assert set(more) - hold, (held, more, hold)
