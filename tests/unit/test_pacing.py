"""Reading a partition's topics in step (streams/evaluator/pacing.py), hand-checked.

The policy must bound the join buffer without ever stopping all reading: what is processed in
step is what every topic that may still deliver has delivered up to, a topic read to its end
never holds the others back, the topic that sets the limit always drains, and both the
in-step switch and the pausing of long queues have hysteresis.
"""

from __future__ import annotations

import itertools

import pytest

from streams.evaluator.pacing import NEVER, PartitionInput, in_step, release_limit, topics_to_pause

R, T, S, L = "requests", "teacher", "student", "labels"
PACED = (R, T, S)


def _input(records: dict[str, list[int]]) -> PartitionInput:
    """Queued records named topic:offset, with the given timestamps."""
    inp = PartitionInput(read_at={})
    for name, stamps in records.items():
        for offset, ts in enumerate(stamps):
            inp.add(name, ts, offset, f"{name}:{offset}")
    return inp


def test_in_step_over_the_bound_out_of_it_at_half() -> None:
    assert in_step(False, 5000, 5000) is False  # at the bound, not over it
    assert in_step(False, 5001, 5000) is True
    assert in_step(True, 4000, 5000) is True    # over half: stays in step
    assert in_step(False, 4000, 5000) is False  # nor does it start under the bound
    assert in_step(True, 2500, 5000) is False   # at half: out
    assert in_step(True, 10**6, 0) is False     # bound 0: off


def test_the_release_limit_is_the_oldest_newest_among_topics_that_may_deliver() -> None:
    newest = {R: 90_000, T: 10_000, S: 12_000}
    assert release_limit(newest, PACED) == 10_000
    assert release_limit(newest, (R, S)) == 12_000  # the teacher worker is down: not waited for
    assert release_limit(newest, ()) is None         # nothing more anywhere: everything goes
    assert release_limit({R: 90_000}, (R, T)) == NEVER  # a topic that delivered nothing yet


def test_take_processes_each_topic_up_to_the_limit_in_offset_order() -> None:
    inp = _input({R: [1, 2, 3, 9], T: [1, 2], S: [2, 3, 4], L: [50, 60]})
    # the teacher has delivered up to 2: requests and students wait beyond it; labels never do
    got = inp.take(release_limit(inp.newest_ms, PACED), PACED)
    assert got == ["requests:0", "requests:1", "teacher:0", "teacher:1", "student:0", "labels:0", "labels:1"]
    assert inp.queued() == 4  # requests at 3 and 9, students at 3 and 4
    got = inp.take(None, PACED)  # out of step: everything, in offset order
    assert got == ["requests:2", "requests:3", "student:1", "student:2"]
    assert inp.queued() == 0


def test_records_newer_than_the_catalog_wait_in_every_topic() -> None:
    """hold_after_ms (the catalog reader's safe time) applies to every topic, labels included,
    and with pacing the tighter of the two limits counts."""
    inp = _input({R: [1, 2, 8], T: [1, 7], S: [3], L: [2, 9]})
    got = inp.take(None, PACED, hold_after_ms=5)  # out of step: only the catalog holds back
    assert got == ["requests:0", "requests:1", "teacher:0", "student:0", "labels:0"]
    assert inp.queued() == 3
    inp = _input({R: [1, 2, 8], T: [1, 7], S: [3], L: [2, 9]})
    got = inp.take(2, PACED, hold_after_ms=5)  # in step up to 2: the paced topics stop there
    assert got == ["requests:0", "requests:1", "teacher:0", "labels:0"]
    inp = _input({R: [1, 9], T: [4]})
    assert inp.take(9, PACED, hold_after_ms=4) == ["requests:0", "teacher:0"]  # the catalog is the tighter
    assert inp.take(None, PACED, hold_after_ms=None) == ["requests:1"]


def test_a_record_over_the_limit_stops_its_topic_even_if_later_ones_are_older() -> None:
    inp = _input({R: [5, 20, 6], T: [10]})
    assert inp.take(10, PACED) == ["requests:0", "teacher:0"]  # requests:2 waits behind requests:1
    assert inp.newest_ms == {R: 20, T: 10}
    assert inp.delivered == {R: 3, T: 1}


def test_long_queues_are_paused_and_resumed_at_half() -> None:
    assert topics_to_pause({R: 5001, T: 10, S: 0}, set(), 5000) == {R}
    assert topics_to_pause({R: 4000, T: 10}, {R}, 5000) == {R}  # over half: still paused
    assert topics_to_pause({R: 2500, T: 10}, {R}, 5000) == set()
    assert topics_to_pause({R: 4000}, set(), 5000) == set()
    assert topics_to_pause({R: 10**6}, set(), 0) == set()       # bound 0: off


@pytest.mark.parametrize("r,t,s", list(itertools.product([0, 5, 60], repeat=3)))
def test_the_topic_that_sets_the_limit_drains_so_reading_goes_on(r: int, t: int, s: int) -> None:
    """Whatever the timestamps, and whichever topics may still deliver, one of those has
    its whole queue processed: it is then short, so never paused, and it reads on."""
    for may in (PACED, (R, T), (S,)):
        inp = _input({R: list(range(r + 1)), T: list(range(t + 1)), S: list(range(s + 1))})
        inp.take(release_limit(inp.newest_ms, may), PACED)
        assert any(not inp.queues[name] for name in may), (may, {n: len(q) for n, q in inp.queues.items()})
