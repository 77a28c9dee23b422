"""The demo loop: broker, store, monitor, workers, an on-call receiver, traffic, report.

Everything the demo starts is a real component run the way a user runs it: the local Kafka
broker (``distillwatch kafka start``), ``distillwatch run`` as the monitor, two
``distillwatch worker … --backend sim`` processes answering as the simulated teacher and
student, Prometheus Alertmanager when it is installed, and a local receiver standing in for
on-call. The traffic is a scenario of the reference guide (``simulate``), published request
by request on an accelerated clock; the workers answer live. A firing retrain rule starts
``distillwatch train`` on CPU through the monitor's launcher. At the end the report is
written through the monitor's API and every process the demo started is stopped.
"""

from __future__ import annotations

import heapq
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from distillwatch.settings import Settings
from schemas.replay import open_log
from streams import topics
from streams.alerting.signing import new_secret
from streams.demo.receiver import PageReceiver
from streams.local_alertmanager import AlertmanagerSetupError, LocalAlertmanager, find_binary, webhook_config
from streams.local_kafka import LocalKafka, produce_consume_ok
from streams.replay import ReplayReport, replay
from simulator.truth import truth_path


@dataclass
class DemoOptions:
    scenarios: list[str] = field(default_factory=lambda: ["rare_class_collapse"])
    minutes: float = 10.0
    speed: float = 10.0
    """Simulated seconds per real second while publishing."""
    seed: int = 0
    retrain: bool = True
    train_epochs: int = 2
    timeout_s: float = 420.0


@dataclass
class DemoState:
    phase: str = "starting"
    published: int = 0
    total: int = 0
    expected: list[tuple[str, str]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    slices: list[list[Any]] = field(default_factory=list)
    alerts: list[list[Any]] = field(default_factory=list)
    jobs: list[list[Any]] = field(default_factory=list)
    pages: list[Any] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    report: Path | None = None
    alertmanager: str | None = None


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Demo:
    def __init__(self, settings: Settings, options: DemoOptions, on_change: Callable[[DemoState], None]) -> None:
        self.base = settings
        self.opts = options
        self.on_change = on_change
        self.state = DemoState()
        self.root = Path(settings.data_dir).resolve() / "demo"
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.kafka: LocalKafka | None = None
        self.alertmanager: LocalAlertmanager | None = None
        self.receiver: PageReceiver | None = None
        self.halt = threading.Event()
        self.port = free_port()

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> DemoState:
        try:
            self._setup()
            self._traffic_and_watch()
            self._finish()
        finally:
            self.stop()
        return self.state

    def note(self, line: str) -> None:
        self.state.log.append(f"{time.strftime('%H:%M:%S')} {line}")
        self.on_change(self.state)

    def _setup(self) -> None:
        if self.root.exists():
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True)
        self.prefix = f"demo{int(time.time())}."
        self._kafka()
        self.receiver = PageReceiver(new_secret()).start()
        targets: list[dict[str, Any]] = [
            {"type": "webhook", "name": "on-call", "url": self.receiver.url + "/webhook",
             "secret": self.receiver.secret}]
        try:
            find_binary()
            self.alertmanager = LocalAlertmanager(
                self.root / "alertmanager", webhook_config(self.receiver.url + "/alertmanager")).start()
            targets.append({"type": "alertmanager", "name": "alertmanager", "url": self.alertmanager.url})
            self.state.alertmanager = self.alertmanager.url
            self.note(f"Alertmanager up at {self.alertmanager.url}")
        except AlertmanagerSetupError as exc:
            self.note(f"Alertmanager not installed ({exc}); paging the receiver directly")
        self.config = self.root / "distillwatch.yaml"
        self.config.write_text(json.dumps({
            "data_dir": str(self.root / "data"), "topic_prefix": self.prefix,
            "kafka": {"bootstrap_servers": self.base.kafka.bootstrap_servers},
            "http": {"port": self.port},
            # Simulated traffic arrives in order: a short grace closes the last windows sooner.
            "evaluation": {"windows_s": [60], "grace_s": 30},
            "evaluator": {"group_id": f"{self.prefix}evaluator", "checkpoint_s": 2, "idle_flush_s": 3},
            # A bigger share of traffic kept for retraining than the production default (5 %),
            # so the few simulated minutes give the CPU retrain enough examples.
            "privacy": {"example_share": 0.08},
            "alerting": {"targets": targets, "poll_s": 0.5, "settle_s": 5,
                         "retrain": {"launcher": "subprocess" if self.opts.retrain else "none",
                                     "train_args": ["--epochs", str(self.opts.train_epochs)]}},
        }, indent=2))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLWATCH_")}
        self.env["DISTILLWATCH_CONFIG"] = str(self.config)
        self.env.setdefault("PYTHONPATH", str(Path(__file__).resolve().parents[2]))
        self._cli("init")
        self.logs = self._simulate()
        self._start("monitor", "run", "-v")
        truths = [str(truth_path(p)) for p in self.logs]
        for role in ("teacher", "student"):
            args = ["worker", role, "--backend", "sim"]
            for t in truths:
                args += ["--sim-truth", t]
            self._start(f"{role} worker", *args)
        self._wait_http()
        self.note(f"monitor up: http://127.0.0.1:{self.port}/metrics; workers answering as the simulated models")

    def _kafka(self) -> None:
        local = self.base.local_kafka
        bootstrap = f"{local.host}:{local.port}"
        if self.base.kafka.bootstrap_servers == bootstrap and not produce_consume_ok(bootstrap, timeout_s=5):
            self.note("starting the local Kafka broker (first run downloads the jars) ...")
            self.kafka = LocalKafka(local, Path(self.base.data_dir).resolve() / "kafka")
            self.kafka.start(log=lambda line: None)
            self.note(f"Kafka up at {bootstrap}")
        else:
            self.note(f"using the Kafka broker at {self.base.kafka.bootstrap_servers}")

    def _simulate(self) -> list[Path]:
        from simulator import scenarios
        from simulator.generate import Simulation

        minutes = self.opts.minutes
        start = (datetime.now(UTC) - timedelta(minutes=minutes + 1)).replace(second=0, microsecond=0)
        logs = []
        for name in self.opts.scenarios:
            sim = Simulation(scenarios.get(name), self.opts.seed, minutes, None, start)
            path = self.root / f"{name}.jsonl"
            with open(path, "wb") as out:
                for line in sim.lines():
                    out.write(orjson.dumps(line) + b"\n")
            truth = sim.truth()
            truth.write(truth_path(path))
            for e in truth.expected:
                for s in e.slices:
                    self.state.expected.append((e.rule, s))
            self.state.total += truth.requests
            self.note(f"scenario {name}: {sim.scenario.summary} (onset +{truth.onset_s or 0:.0f}s, "
                      f"expect {', '.join(f'{e.rule} on {s}' for e in truth.expected for s in e.slices) or 'nothing'})")
            logs.append(path)
        self.rate = sum(scenarios.get(n).rate for n in self.opts.scenarios)
        return logs

    def _traffic_and_watch(self) -> None:
        self.state.phase = "traffic"
        report: dict[str, ReplayReport] = {}
        settings = self.base.model_copy(update={"topic_prefix": self.prefix})

        def publish() -> None:
            skip = frozenset({topics.TEACHER, topics.STUDENT, topics.TEACHER_REPLICA})
            report["r"] = replay(self._merged_lines(), settings, rate=self.rate * self.opts.speed,
                                 skip_topics=skip, halt=self.halt.is_set,
                                 progress=lambda r: setattr(self.state, "published", r.pairs))

        sender = threading.Thread(target=publish, name="demo-traffic", daemon=True)
        sender.start()
        deadline = time.monotonic() + self.opts.timeout_s
        quiet_since: float | None = None
        last_progress: tuple[Any, ...] = ()
        while time.monotonic() < deadline and not self.halt.is_set():
            time.sleep(1.0)
            self._poll()
            self._check_children()
            if sender.is_alive():
                continue
            if self.state.phase == "traffic":
                self.state.phase = "draining"
                self.note(f"traffic sent: {report['r'].pairs} requests; waiting for the monitor to catch up")
            idle = self.state.metrics.get("idle") == 1.0
            jobs_done = not self.opts.retrain or all(
                j[1] in ("succeeded", "failed", "interrupted") for j in self.state.jobs)
            progress = (len(self.state.alerts), len(self.state.jobs), self.state.metrics.get("windows_judged"))
            if progress != last_progress:
                last_progress, quiet_since = progress, None
            if idle and jobs_done:
                quiet_since = quiet_since or time.monotonic()
                # Everything expected fired (and its retraining ended), or nothing moves any more.
                if time.monotonic() - quiet_since > (3 if self._fired_all() else 30):
                    return
            else:
                quiet_since = None
        if not self.halt.is_set():
            self.note("time limit reached; writing the report with what is there")

    def _merged_lines(self) -> Iterator[bytes]:
        """The scenario logs interleaved by event time, as production would mirror them."""
        def keyed(path: Path) -> Iterator[tuple[str, int, bytes]]:
            with open_log(path) as handle:
                for i, line in enumerate(handle):
                    ts = ""
                    if line.startswith(b'{"request"'):
                        ts = orjson.loads(line)["request"]["ts"]
                    yield ts, i, line
        streams = [keyed(p) for p in self.logs]
        for _, _, line in heapq.merge(*streams, key=lambda t: (t[0], t[1])):
            yield line

    def _fired_all(self) -> bool:
        fired = {(a[1], a[2]) for a in self.state.alerts if a[0] == "firing"}
        return all(e in fired for e in self.state.expected)

    def _finish(self) -> None:
        self.state.phase = "report"
        out = self.root / "report.html"
        since = (datetime.now(UTC) - timedelta(minutes=self.opts.minutes + 5)).strftime("%Y-%m-%dT%H:%M:%SZ")
        done = self._cli("report", "--since", since, "--out", str(out), check=False)
        if done.returncode == 0:
            self.state.report = out
            self.note(f"report written: {out}")
        else:
            self.note(f"report failed: {done.stderr.strip().splitlines()[-1:]}")
        self._poll()
        self.state.phase = "done"
        self.on_change(self.state)

    # -- observation ---------------------------------------------------------------------

    def _poll(self) -> None:
        try:
            self.state.metrics = self._metrics()
            self.state.slices = self._sql(
                "SELECT slice, round(anyIf(value, metric='recall.safety_escalation'), 3), "
                "round(anyIf(value, metric='accuracy'), 3), round(anyIf(value, metric='ece'), 3), "
                "round(anyIf(value, metric='fallback_rate'), 3), toInt64(anyIf(value, metric='support')) "
                "FROM distillwatch.window_metrics FINAL WHERE window_start = "
                "(SELECT max(window_start) - 60 FROM distillwatch.window_metrics) "
                "AND (slice = 'all' OR slice LIKE 'language=%' OR slice LIKE 'region=%') "
                "GROUP BY slice ORDER BY slice = 'all' DESC, slice LIMIT 12")
            self.state.alerts = self._sql(
                "SELECT status, rule, slice, toString(window_start), severity FROM distillwatch.alerts FINAL "
                "WHERE rule NOT LIKE 'drift:%' ORDER BY window_start, status = 'resolved'")
            self.state.jobs = self._sql("SELECT job_id, status, output_dir FROM distillwatch.retrain_jobs FINAL")
        except OSError:
            pass
        if self.receiver is not None:
            self.state.pages = self.receiver.snapshot()
        self.on_change(self.state)

    def _metrics(self) -> dict[str, float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("distillwatch_") and "{" not in line:
                name, _, value = line.rpartition(" ")
                out[name.removeprefix("distillwatch_")] = float(value)
            elif line.startswith("distillwatch_consumer_lag{"):
                out["lag"] = out.get("lag", 0.0) + float(line.rpartition(" ")[2])
        return out

    def _sql(self, query: str) -> list[list[Any]]:
        body = json.dumps({"sql": query}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/sql", data=body, method="POST")
        with urllib.request.urlopen(req, timeout=30) as resp:
            return list(json.loads(resp.read())["rows"])

    def _wait_http(self, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._check_children()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"the monitor did not answer within {timeout_s:.0f}s; see {self.root}/monitor.log")

    # -- processes -----------------------------------------------------------------------

    def _cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "distillwatch", *args], env=self.env,
                              capture_output=True, text=True, timeout=300)
        if check and done.returncode != 0:
            raise RuntimeError(f"distillwatch {args[0]} failed: {done.stderr.strip()}")
        return done

    def _start(self, name: str, *args: str) -> None:
        log = open(self.root / f"{name.replace(' ', '-')}.log", "wb")  # noqa: SIM115 (the child owns it)
        proc = subprocess.Popen([sys.executable, "-m", "distillwatch", *args], env=self.env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.procs.append((name, proc))

    def _check_children(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"the {name} exited with code {proc.returncode}; see "
                                   f"{self.root / (name.replace(' ', '-') + '.log')}")

    def stop(self) -> None:
        """Stop every process the demo started (also on Ctrl-C), the monitor last."""
        self.halt.set()
        for name, proc in sorted(self.procs, key=lambda p: p[0] == "monitor"):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(40)
                except subprocess.TimeoutExpired:
                    proc.kill()
        self.procs.clear()
        if self.alertmanager is not None:
            self.alertmanager.stop()
            self.alertmanager = None
        if self.receiver is not None:
            self.receiver.stop()
        if self.kafka is not None:
            self.kafka.stop()
            self.kafka = None
