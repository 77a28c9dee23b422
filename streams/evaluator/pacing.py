"""Reading a partition's topics in step, so that its join buffer stays bounded.

A request waits in its partition's join buffer until its teacher and student answers are
read. The consumer fetches each topic-partition on its own, so on a backlog one topic can run
far ahead of another: working off 300,000 pairs, the evaluator once held 256,000 requests
whose answers were still unread (~1.9 KB each in memory; it peaked at 1.2-2.1 GB).

What the consumer delivers is kept in a queue per topic, raw, and processed from there, as
Kafka Streams does with its partition group. While a partition's join buffer is over its
bound, only records up to the release limit are processed: the oldest of the newest
timestamps delivered by the topics that may still deliver more, so every topic has been read
up to it and no join waits for an answer that was merely fetched later. A topic with nothing
more to read (a model worker that is down) does not set the limit. A queue longer than the
bound has its topic-partition paused until it is half as long; the topic that sets the limit
has delivered every record it queued up to it, so its queue empties and reading goes on.

An earlier version paused topics that ran ahead instead of queueing them; a released topic then
delivered its whole prefetched queue at once, and the buffer swung to 3x its bound (docs/
performance.md). Pure: the engine supplies timestamps, ends and sizes, and does the pausing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

NEVER = -(1 << 62)
"""The newest timestamp of a topic none of whose records was delivered yet: older than any."""


@dataclass
class PartitionInput:
    """Records of one partition delivered by the consumer and not processed yet."""

    read_at: dict[str, float]
    """Monotonic time of the last delivery from each paced topic (at first: of assignment)."""
    queues: dict[str, deque[Any]] = field(default_factory=dict)
    """Topic name → records (``(timestamp ms, message)``) in offset order."""
    newest_ms: dict[str, int] = field(default_factory=dict)
    """The newest record timestamp delivered from each topic."""
    delivered: dict[str, int] = field(default_factory=dict)
    """The offset after the last record delivered from each topic."""
    held: set[str] = field(default_factory=set)
    """Topics paused now because their queue is long."""
    in_step: bool = False
    """Processing only up to the release limit (the join buffer went over its bound)."""

    def add(self, name: str, ts_ms: int, offset: int, msg: Any) -> None:
        queue = self.queues.get(name)
        if queue is None:
            queue = self.queues[name] = deque()
        queue.append((ts_ms, msg))
        if ts_ms > self.newest_ms.get(name, NEVER):
            self.newest_ms[name] = ts_ms
        self.delivered[name] = offset + 1

    def queued(self) -> int:
        return sum(len(q) for q in self.queues.values())

    def take(self, limit_ms: int | None, limited: Collection[str], hold_after_ms: int | None = None) -> list[Any]:
        """The records to process now, each topic's in offset order: those of the ``limited``
        topics up to ``limit_ms``, all of the others; and of any topic, none stamped after
        ``hold_after_ms`` (a record over its topic's limit stops that topic)."""
        out: list[Any] = []
        for name, queue in self.queues.items():
            cap = hold_after_ms
            if limit_ms is not None and name in limited:
                cap = limit_ms if cap is None else min(cap, limit_ms)
            if cap is None:
                out.extend(msg for _, msg in queue)
                queue.clear()
                continue
            while queue and queue[0][0] <= cap:
                out.append(queue.popleft()[1])
        return out


def in_step(was: bool, buffered: int, bound: int) -> bool:
    """Whether to process in timestamp order, given what waits (the join buffer and the
    queues): over the bound yes, at half of it or under no, in between as before. Counting
    the queues keeps a partition in step until they are short, so that leaving it lets in
    at most half the bound at once. ``bound`` 0: never."""
    if bound <= 0 or buffered <= bound // 2:
        return False
    return True if buffered > bound else was


def release_limit(newest_ms: Mapping[str, int], may_deliver: Iterable[str]) -> int | None:
    """Records up to this timestamp may be processed: every topic that may still deliver has
    delivered up to it. None (no such topic): everything may."""
    return min((newest_ms.get(t, NEVER) for t in may_deliver), default=None)


def topics_to_pause(queued: Mapping[str, int], held: Collection[str], bound: int) -> set[str]:
    """Topics whose queue is longer than ``bound``, and those held that are not yet down to
    half of it."""
    if bound <= 0:
        return set()
    return {t for t, n in queued.items() if n > bound or (t in held and n > bound // 2)}
