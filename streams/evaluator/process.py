"""The evaluator in a process of its own, started and watched by the monitor.

The evaluator is single-threaded Python and the busiest part of the monitor. In the
monitor's process it shared one interpreter lock with the ClickHouse sink, the alerter and
the HTTP API, and its memory was counted with the embedded ClickHouse engine's. In a child
process it has a core's worth of interpreter to itself while the sink writes what it
committed, and its resident memory is its own.

Protocol, parent to child: one pickled :class:`EngineSpec` on the child's stdin. Child to
parent: one JSON line of :class:`~streams.evaluator.engine.EngineStats` (plus restart
state) on a pipe, every 0.2 s and when it ends. SIGTERM or SIGINT
stops the child the way ``stop`` stops an engine in a thread (it commits its last
transaction); it dies with its parent (``PR_SET_PDEATHSIG``), so a monitor killed with
SIGKILL leaves no evaluator behind: its open transaction is aborted when the next one
fences it, as when the evaluator was a thread.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
from dataclasses import asdict, dataclass
from typing import Any

from evaluators.config import EvalConfig
from streams.evaluator.engine import (
    EngineOptions, EngineStats, EvaluatorEngine, quiet_collector, run_restarting,
)
from streams.evaluator.outputs import RowBuilder

STATS_EVERY_S = 0.2
"""How often the child reports its stats (the alerter's settle test reads them)."""


@dataclass
class EngineSpec:
    """Everything the child needs to build the engine (secrets included: it travels on a pipe)."""

    kafka_conf: dict[str, Any]
    topic_prefix: str
    config: EvalConfig
    rows: RowBuilder
    options: EngineOptions
    log_level: int
    parent_pid: int


class _Prefixed:
    """``settings.topic`` without the settings: name → prefixed name (picklable)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __call__(self, name: str) -> str:
        return f"{self.prefix}{name}"


def new_engine(spec: EngineSpec) -> EvaluatorEngine:
    return EvaluatorEngine(spec.kafka_conf, _Prefixed(spec.topic_prefix), spec.config, spec.rows, spec.options)


class EngineProcess:
    """Stands where an :class:`EvaluatorEngine` stood in the monitor: ``run`` (blocks until the
    child ends; raises if it failed), ``stop``, ``stopping`` and ``stats``."""

    def __init__(self, spec: EngineSpec) -> None:
        self.spec = spec
        self.stats = EngineStats()
        self.problem: str | None = None
        """Why the evaluator is waiting to start again (Kafka unreachable), None while it runs."""
        self.restarts = 0
        self._stop = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)

    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        read_fd, write_fd = os.pipe()
        with self._lock:
            if self._stop.is_set():
                os.close(read_fd)
                os.close(write_fd)
                return
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "streams.evaluator.process", str(write_fd)],
                stdin=subprocess.PIPE, pass_fds=(write_fd,), env=os.environ.copy(),
            )
        os.close(write_fd)
        proc = self._proc
        assert proc.stdin is not None
        proc.stdin.write(pickle.dumps(self.spec))
        proc.stdin.close()
        with os.fdopen(read_fd, "rb") as updates:
            for line in updates:
                self._update(line)
        code = proc.wait()
        if code != 0 and not (self._stop.is_set() and code in (-signal.SIGTERM, -signal.SIGINT)):
            raise RuntimeError(f"the evaluator process exited with code {code} (its log is above)")

    def _update(self, line: bytes) -> None:
        try:
            data = json.loads(line)
        except ValueError:
            return
        lag = {(topic, int(p)): int(n) for topic, p, n in data.pop("lag", [])}
        self.problem = data.pop("problem", None)
        self.restarts = int(data.pop("restarts", 0))
        self.stats = EngineStats(**data, lag=lag)  # one reference swap: readers see a whole update


def _stats_line(stats: EngineStats, problem: str | None, restarts: int) -> bytes:
    data = asdict(stats)
    data["lag"] = [[topic, p, n] for (topic, p), n in stats.lag.items()]
    data["problem"], data["restarts"] = problem, restarts
    return json.dumps(data).encode() + b"\n"


def _die_with_parent(parent_pid: int) -> None:
    """SIGKILL this process when its parent dies (Linux); exit now if it already has."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the parent's SIGTERM still stops it
        pass
    if os.getppid() != parent_pid:
        os._exit(1)


def main(stats_fd: int) -> None:
    from threadpoolctl import threadpool_limits

    spec: EngineSpec = pickle.loads(sys.stdin.buffer.read())
    _die_with_parent(spec.parent_pid)
    logging.basicConfig(level=spec.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    threadpool_limits(1)  # BLAS threads would contend with the sink and the broker
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    out = os.fdopen(stats_fd, "wb", buffering=0)
    state: dict[str, Any] = {"engine": new_engine(spec), "problem": None, "restarts": 0}
    write_lock = threading.Lock()

    def report() -> None:
        line = _stats_line(state["engine"].stats, state["problem"], state["restarts"])
        with write_lock:  # whole lines: the reporter thread and the last report may race
            if not out.closed:
                out.write(line)

    def on_problem(problem: str | None, engine: EvaluatorEngine, restarts: int) -> None:
        state.update(problem=problem, engine=engine, restarts=restarts)

    def stop_watch() -> None:  # the signal handler only sets an event: stop the engine from here
        stopping.wait()
        state["engine"].stop()

    def reporter() -> None:
        while not stopping.wait(STATS_EVERY_S):
            report()

    threading.Thread(target=stop_watch, name="stop-watch", daemon=True).start()
    threading.Thread(target=reporter, name="stats", daemon=True).start()
    quiet_collector(at_checkpoints=True)
    try:
        run_restarting(lambda: new_engine(spec), state["engine"], stopping, on_problem)
    finally:
        report()
        with write_lock:
            out.close()


if __name__ == "__main__":
    main(int(sys.argv[1]))
