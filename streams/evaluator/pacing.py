"""Which input topics of a partition to hold back so that its join buffer stays bounded.

A request waits in its partition's join buffer until its teacher and student answers are
read. The consumer fetches each topic-partition on its own, so on a backlog one topic can run
far ahead of another: working off 300,000 pairs, the evaluator had read 256,000 requests whose
answers were still unread (~1.9 KB each in memory; the evaluator peaked at 1.2-2.1 GB).

When a partition's buffer grows past a bound, its topics are read in timestamp order, as
Kafka Streams does: a topic whose last record is newer than the oldest last record among the
topics that still have records to read (plus a slack) is paused until the others catch up.
That includes a topic read to its end (live, the requests topic usually is: what arrives
next would run ahead again), but such a topic never sets the pace. The topic with the oldest
record among those with more to read is never paused, so reading always progresses. Below
half the bound everything resumes. Pure: the engine supplies timestamps, ends and sizes, and
applies the answer with pause/resume.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

SLACK_MS = 1000
"""A topic may run this far ahead of the oldest before it is paused (producers' clocks and
the answer latency differ by about this much)."""


NEVER = -(1 << 62)
"""The timestamp of a topic none of whose records was read yet: older than any."""


@dataclass
class PartitionPace:
    """What the engine keeps per partition to pace it."""

    read_at: dict[str, float]
    """Monotonic time of the last record read from each paced topic (at first: of assignment)."""
    last_ts_ms: dict[str, int] = field(default_factory=dict)
    """Timestamp of the last record read from each paced topic."""
    held: set[str] = field(default_factory=set)
    """The paced topics paused now."""


def topics_to_hold(
    buffered: int,
    limit: int,
    held: Collection[str],
    last_ts_ms: Mapping[str, int],
    has_more: Collection[str],
    slack_ms: int = SLACK_MS,
) -> set[str]:
    """The aligned topics of one partition to keep paused, given its join buffer size now.

    ``held``: the topics paused now; ``last_ts_ms``: the timestamp of the last record read
    from each topic (absent: none yet); ``has_more``: the topics with records left to read
    (only these set the pace). ``limit`` 0: no pacing.
    """
    if limit <= 0 or buffered <= limit // 2:
        return set()
    if buffered <= limit and not held:
        return set()  # between half the bound and the bound: hold nothing new
    if not has_more:
        return set()
    floor = min(last_ts_ms.get(t, NEVER) for t in has_more)
    return {t for t, ts in last_ts_ms.items() if ts > floor + slack_ms}
