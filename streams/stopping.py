"""When a worker stops: on SIGTERM/SIGINT after the batch in progress, or after idling."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any


def install_stop_signals(stop: threading.Event) -> None:
    """SIGTERM/SIGINT: finish the batch, commit, exit 0. A second signal interrupts at once."""

    def handler(signum: int, _frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


class IdleClock:
    """Idle time counts from the last record or partition assignment; before the first
    assignment (a group join takes seconds) it takes at least JOIN_GRACE_S to give up."""

    JOIN_GRACE_S = 30.0

    def __init__(self, limit_s: float | None) -> None:
        self.limit_s = limit_s
        self.since = time.monotonic()
        self.ever_assigned = False

    def assigned(self) -> None:
        self.ever_assigned = True
        self.reset()

    def reset(self) -> None:
        self.since = time.monotonic()

    def expired(self) -> bool:
        if self.limit_s is None:
            return False
        limit = self.limit_s if self.ever_assigned else max(self.limit_s, self.JOIN_GRACE_S)
        return time.monotonic() - self.since >= limit
