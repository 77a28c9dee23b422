"""The always-on monitor: evaluator, ClickHouse sink, alerting and HTTP API.

With the embedded ClickHouse (one process may own it) this is the only writer; with a
ClickHouse server, more evaluator instances can run with ``evaluator.sink = false``. With
the sink here, the evaluator runs in a child process of its own (``evaluator.own_process``,
see streams.evaluator.process); without it, in a thread.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from prometheus_client import CollectorRegistry
from threadpoolctl import threadpool_limits

from distillwatch.settings import Settings, hash_key
from evaluators.privacy import Redactor
from evaluators.window_state import Layout
from streams.alerting.service import AlertingService, load_rules
from streams.clickhouse import Store, open_store
from streams.evaluator.engine import EngineOptions, EvaluatorEngine, run_restarting
from streams.evaluator.outputs import RowBuilder, SamplingPolicy
from streams.evaluator.process import EngineProcess, EngineSpec
from streams.http_api import MonitorCollector, make_handler, serve
from streams.migrations import migrate
from streams.sink import Sink
from streams.topics import ensure_topics

log = logging.getLogger(__name__)


class Monitor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        config = settings.evaluation.eval_config()
        ev = settings.evaluator
        self.kafka_conf = settings.kafka.librdkafka_config()
        privacy = settings.privacy
        rows = RowBuilder(config, hash_key(settings),
                          SamplingPolicy(privacy.payload_share, privacy.forensic_rate,
                                         privacy.example_share),
                          Redactor(privacy.order_id_pattern))
        options = EngineOptions(
            group_id=ev.group_id, instance_id=ev.instance_id,
            window_sizes=list(settings.evaluation.windows_s), grace_s=settings.evaluation.grace_s,
            handle_horizon_s=ev.handle_horizon_s, max_handles=ev.max_handles,
            checkpoint_s=ev.checkpoint_s, caught_up_commit_s=ev.caught_up_commit_s,
            idle_flush_s=ev.idle_flush_s, batch_size=ev.batch_size, max_join_buffer=ev.max_join_buffer,
        )
        self._new_engine = lambda: EvaluatorEngine(self.kafka_conf, settings.topic, config, rows, options)
        self.engine: EvaluatorEngine | EngineProcess
        if ev.sink and ev.own_process:
            self.engine = EngineProcess(EngineSpec(
                self.kafka_conf, settings.topic_prefix, config, rows, options,
                logging.getLogger().getEffectiveLevel(), os.getpid()))
        else:
            self.engine = self._new_engine()
        self._engine_restarts = 0
        self._engine_problem: str | None = None
        self._stopping = threading.Event()
        self.layout = Layout(config)
        self.rules = load_rules(settings) if settings.alerting.enabled else None  # bad rules fail here
        self.alerting: AlertingService | None = None
        self.store: Store | None = None
        self.sink: Sink | None = None
        self.lock = threading.Lock()
        self.error: BaseException | None = None
        self._engine_thread: threading.Thread | None = None
        self._rate = (time.monotonic(), 0)

    def start(self) -> None:
        threadpool_limits(1)  # BLAS threads would contend with the evaluator, sink and broker
        ensure_topics(self.settings)
        if self.settings.evaluator.sink:
            self.store = open_store(self.settings.clickhouse_dsn(), self.settings.clickhouse.database,
                                    owner="distillwatch run",
                                    lock_timeout_s=self.settings.clickhouse.lock_timeout_s)
            migrate(self.store)
            if self.rules is not None:
                self.alerting = AlertingService(self.settings, self.store, self.lock, self.rules,
                                                settled=self.input_settled)
                self.alerting.start()
            self.sink = Sink(self.kafka_conf, self.settings.topic, self.store, self.lock, self.layout,
                             f"{self.settings.evaluator.group_id}-sink",
                             after_write=self.alerting.after_write if self.alerting else None)
            self.sink.start()
        self._engine_thread = threading.Thread(target=self._run_engine, name="evaluator", daemon=True)
        self._engine_thread.start()
        registry = CollectorRegistry()
        registry.register(MonitorCollector(self.metrics_snapshot))
        handler = make_handler(self.store, self.lock, registry, self.health)
        self.http = serve(self.settings.http.host, self.settings.http.port, handler)

    def _run_engine(self) -> None:
        """Run the evaluator (restarting it from its checkpoint when Kafka fails it: in the
        child process when it has one); any other error stops the monitor."""
        try:
            if isinstance(self.engine, EngineProcess):
                self.engine.run()
            else:
                run_restarting(self._new_engine, self.engine, self._stopping, self._engine_changed)
        except BaseException as exc:
            self.error = exc
            log.exception("evaluator stopped")

    def _engine_changed(self, problem: str | None, engine: EvaluatorEngine, restarts: int) -> None:
        self._engine_problem, self.engine, self._engine_restarts = problem, engine, restarts

    @property
    def engine_problem(self) -> str | None:
        """Why the evaluator is waiting to start again (Kafka unreachable), None while it runs."""
        return self.engine.problem if isinstance(self.engine, EngineProcess) else self._engine_problem

    @property
    def engine_restarts(self) -> int:
        return self.engine.restarts if isinstance(self.engine, EngineProcess) else self._engine_restarts

    def health(self) -> tuple[bool, str]:
        self.failed()  # notices an evaluator thread that died silently
        if self.error is not None:
            return False, f"evaluator failed: {self.error}"
        if self.engine_problem is not None:
            return False, self.engine_problem
        if self.sink is not None and self.sink.error is not None:
            return False, f"sink failed: {self.sink.error}"
        if self.sink is not None and self.sink.store_problem() is not None:
            return False, f"sink: {self.sink.store_problem()}"
        if self.alerting is not None and self.alerting.failed() is not None:
            return False, f"alerting failed: {self.alerting.failed()}"
        return True, "ok"

    def failed(self) -> BaseException | None:
        thread = self._engine_thread
        if self.error is None and thread is not None and not thread.is_alive() and not self.engine.stopping():
            self.error = RuntimeError("the evaluator thread ended without an error it could report")
        return self.error or (self.sink.error if self.sink is not None else None)

    def metrics_snapshot(self) -> dict[str, Any]:
        stats = self.engine.stats
        then, records = self._rate
        now = time.monotonic()
        rate = (stats.records - records) / (now - then) if now > then else 0.0
        self._rate = (now, stats.records)
        return {
            "records": stats.records, "dead_letters": stats.dead_letters,
            "checkpoints": stats.checkpoints, "caught_up_checkpoints": stats.caught_up_checkpoints,
            "open_windows": stats.open_windows,
            "producer_waits": stats.producer_waits, "join_buffer": stats.join_buffer,
            "join_buffer_peak": stats.join_buffer_peak, "input_pauses": stats.input_pauses,
            "paused_inputs": stats.paused_inputs,
            "idle": int(stats.idle), "partitions": len(stats.partitions),
            "events_per_second": rate, "lag": dict(stats.lag), "counters": dict(stats.counters),
            "sink_batch_latency_s": self.sink.stats.batch_latency_s if self.sink else 0.0,
            "sink_store": self.sink.store_gauges() if self.sink else {},
            "alerting": self.alerting.snapshot() if self.alerting else {},
        }

    def stop(self, timeout_s: float = 30.0) -> None:
        """Graceful: the evaluator commits its last transaction, the sink its last batch."""
        self._stopping.set()
        self.engine.stop()
        if self._engine_thread is not None:
            self._engine_thread.join(timeout_s)
        if self.sink is not None:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and self.sink_behind():
                time.sleep(0.2)
            self.sink.stop()
            self.sink.join(timeout_s)
        if self.alerting is not None:
            self.alerting.stop()
        self.http.shutdown()
        if self.store is not None:
            self.store.close()

    def input_settled(self) -> bool:
        """All input read so far is evaluated, committed and written to ClickHouse."""
        return bool(self.engine.stats.idle) and not self.sink_behind()

    def sink_behind(self) -> bool:
        """Whether the sink has not yet written what the evaluator last committed (best effort)."""
        return self.sink is not None and self.sink.stats.caught_up_s < self.engine.stats.last_checkpoint_s
