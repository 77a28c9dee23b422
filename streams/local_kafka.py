"""A single-node Apache Kafka (KRaft) for development and CI, run from Maven Central jars.

``fetch`` resolves ``org.apache.kafka:kafka_2.13`` and its runtime dependencies with ``mvn``
into a cache outside the repository (later starts are offline); ``start`` formats a KRaft
storage directory once, launches ``kafka.Kafka`` in its own session and waits until a
produce and a consume succeed; ``stop`` sends SIGTERM (SIGKILL after a grace period).
``KAFKA_HOME`` pointing at an existing Kafka install is used instead of the Maven jars.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from distillwatch.settings import LocalKafkaSettings, Settings
from streams.errors import KafkaSetupError

MIN_JAVA = 17
_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>io.distillwatch</groupId><artifactId>local-kafka</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{version}</version>
    </dependency>
  </dependencies>
</project>
"""
_LOG4J2 = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <Console name="out" target="SYSTEM_OUT">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Logger name="kafka" level="INFO"/>
    <Logger name="org.apache.kafka" level="WARN"/>
    <Logger name="state.change.logger" level="WARN"/>
    <Root level="WARN"><AppenderRef ref="out"/></Root>
  </Loggers>
</Configuration>
"""


def check_tools(need_maven: bool) -> None:
    """Fail with one line saying what to install when Java 17+ or Maven is missing."""
    java = shutil.which("java")
    if java is None:
        raise KafkaSetupError("java not found: install a Java 17+ runtime (e.g. openjdk-17-jre)")
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    major = int(match[1]) if match else 0
    if major == 1 and match and match[2]:  # "1.8" style
        major = int(match[2])
    if major < MIN_JAVA:
        raise KafkaSetupError(f"java {major} found; Kafka 4 needs Java {MIN_JAVA}+ (install openjdk-17)")
    if need_maven and shutil.which("mvn") is None:
        raise KafkaSetupError("mvn not found: install Maven to fetch the Kafka jars (apt-get install maven)")


def lib_dir(settings: LocalKafkaSettings) -> Path:
    """The directory of broker jars: $KAFKA_HOME/libs, or the Maven cache."""
    home = os.environ.get("KAFKA_HOME")
    if home:
        libs = Path(home) / "libs"
        if not libs.is_dir():
            raise KafkaSetupError(f"KAFKA_HOME={home} has no libs/ directory")
        return libs
    return settings.cache_dir.expanduser() / settings.version / "libs"


def fetch(settings: LocalKafkaSettings, log: Callable[[str], None] = print) -> Path:
    """Resolve the broker jars once; a cached, complete set is reused offline."""
    libs = lib_dir(settings)
    if os.environ.get("KAFKA_HOME"):
        check_tools(need_maven=False)
        return libs
    marker = libs.parent / ".complete"
    if marker.exists():
        return libs
    check_tools(need_maven=True)
    work = libs.parent
    work.mkdir(parents=True, exist_ok=True)
    (work / "pom.xml").write_text(_POM.format(version=settings.version), encoding="utf-8")
    log(f"resolving Apache Kafka {settings.version} jars from Maven Central into {libs} ...")
    staging = work / "libs.partial"
    shutil.rmtree(staging, ignore_errors=True)
    proc = subprocess.run(
        [
            "mvn", "-q", "-B", "-f", str(work / "pom.xml"),
            "dependency:copy-dependencies", "-DincludeScope=runtime",
            f"-DoutputDirectory={staging}",
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
        raise KafkaSetupError(
            f"mvn could not resolve org.apache.kafka:kafka_2.13:{settings.version}: "
            + " | ".join(tail)
        )
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    marker.touch()
    return libs


@dataclass(frozen=True)
class BrokerPaths:
    """Where one local broker keeps its state (under the data dir)."""

    root: Path

    @property
    def logs(self) -> Path:
        return self.root / "data"

    @property
    def properties(self) -> Path:
        return self.root / "server.properties"

    @property
    def pid_file(self) -> Path:
        return self.root / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.root / "broker.log"

    @property
    def log4j(self) -> Path:
        return self.root / "log4j2.xml"


def server_properties(settings: LocalKafkaSettings, logs: Path) -> str:
    host, port, cport = settings.host, settings.port, settings.controller_port
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@{host}:{cport}",
            f"listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{cport}",
            f"advertised.listeners=PLAINTEXT://{host}:{port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"log.dirs={logs}",
            "num.partitions=1",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=6",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=true",
            f"log.retention.hours={settings.retention_hours}",
            f"log.retention.bytes={settings.retention_bytes}",
            # Segments smaller than the retention bound, so it can free disk at all.
            f"log.segment.bytes={min(1 << 30, max(1 << 20, settings.retention_bytes // 4))}",
            "",
        ]
    )


def configured_local_broker(settings: Settings) -> LocalKafka | None:
    """The broker ``distillwatch kafka start`` runs for these settings, when the configured
    Kafka is its address; None when it is a broker the user runs elsewhere."""
    broker = LocalKafka(settings.local_kafka, settings.data_path)
    return broker if settings.kafka.bootstrap_servers == broker.bootstrap else None


class LocalKafka:
    """Start, stop and inspect the local broker described by settings and a data dir."""

    def __init__(self, settings: LocalKafkaSettings, data_dir: Path) -> None:
        self.settings = settings
        self.paths = BrokerPaths(data_dir / "kafka")

    @property
    def bootstrap(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def _java(self, libs: Path, main: str, *args: str, heap: str = "256m") -> list[str]:
        return [
            "java", "-Xms128m", f"-Xmx{heap}",
            f"-Dlog4j2.configurationFile={self.paths.log4j}",
            "-cp", f"{libs}/*", main, *args,
        ]

    def pid(self) -> int | None:
        """The broker's pid if our pid file names a live process."""
        try:
            pid = int(self.paths.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def _format_once(self, libs: Path) -> None:
        if (self.paths.logs / "meta.properties").exists():
            return
        cluster_id = subprocess.run(
            self._java(libs, "kafka.tools.StorageTool", "random-uuid"),
            capture_output=True, text=True, check=True,
        ).stdout.strip().splitlines()[-1]
        proc = subprocess.run(
            self._java(
                libs, "kafka.tools.StorageTool", "format",
                "-t", cluster_id, "-c", str(self.paths.properties), "--ignore-formatted",
            ),
            capture_output=True, text=True,
        )
        if proc.returncode != 0:
            raise KafkaSetupError(f"formatting KRaft storage failed: {proc.stderr.strip()[-400:]}")

    def start(self, log: Callable[[str], None] = print, reuse_existing: bool = False) -> int | None:
        """Start the broker (no-op if ours is running); return its pid once it serves.

        With ``reuse_existing``, a broker that another process runs at the address is used
        (returns None) instead of being an error.
        """
        pid = self.pid()
        if pid is not None and self.ready(timeout_s=5):
            log(f"Kafka already running at {self.bootstrap} (pid {pid})")
            return pid
        if pid is None and reuse_existing and _port_open(self.settings.host, self.settings.port):
            if self.ready(timeout_s=10):
                log(f"using the Kafka broker that already serves at {self.bootstrap}")
                return None
        if pid is None and _port_open(self.settings.host, self.settings.port):
            raise KafkaSetupError(
                f"port {self.bootstrap} is taken by another process; stop it or set "
                "DISTILLWATCH_LOCAL_KAFKA__PORT"
            )
        libs = fetch(self.settings, log)
        self.paths.root.mkdir(parents=True, exist_ok=True)
        self.paths.properties.write_text(server_properties(self.settings, self.paths.logs))
        self.paths.log4j.write_text(_LOG4J2)
        self._format_once(libs)
        if pid is None:
            with open(self.paths.log_file, "ab") as out:
                proc = subprocess.Popen(
                    self._java(libs, "kafka.Kafka", str(self.paths.properties), heap=self.settings.heap),
                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            pid = proc.pid
            self.paths.pid_file.write_text(str(pid))
        log(f"Kafka {self.settings.version} starting at {self.bootstrap} (pid {pid}) ...")
        deadline = time.monotonic() + self.settings.start_timeout_s
        while time.monotonic() < deadline:
            if self.pid() is None:
                raise KafkaSetupError(f"broker exited during start-up: {self._log_tail()}")
            if self.ready(timeout_s=5):
                return pid
            time.sleep(0.5)
        raise KafkaSetupError(
            f"broker not ready after {self.settings.start_timeout_s:.0f}s: {self._log_tail()}"
        )

    def stop(self, grace_s: float = 30.0) -> bool:
        """SIGTERM the broker, SIGKILL after ``grace_s``; False if it was not running."""
        pid = self.pid()
        if pid is None:
            self.paths.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.2)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.1)
        self.paths.pid_file.unlink(missing_ok=True)
        return True

    def ready(self, timeout_s: float = 10.0) -> bool:
        """True when a message produced to a health topic can be consumed back."""
        return produce_consume_ok(self.bootstrap, timeout_s)

    def _log_tail(self, lines: int = 5) -> str:
        try:
            text = self.paths.log_file.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no broker log)"
        return " | ".join(text[-lines:]) + f" (full log: {self.paths.log_file})"


def produce_consume_ok(bootstrap: str, timeout_s: float) -> bool:
    """Produce one message to ``_distillwatch_health`` and read it back."""
    from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

    topic = "_distillwatch_health"
    token = uuid.uuid4().hex.encode()
    deadline = time.monotonic() + timeout_s
    try:
        producer = Producer({"bootstrap.servers": bootstrap, "message.timeout.ms": int(timeout_s * 1000),
                             "socket.connection.setup.timeout.ms": 2000, "log_level": 0})
        delivered: list[tuple[int, int]] = []

        def on_delivery(err: object, msg: object) -> None:
            if err is None:
                delivered.append((msg.partition(), msg.offset()))  # type: ignore[attr-defined]

        producer.produce(topic, token, on_delivery=on_delivery)
        producer.flush(max(0.1, deadline - time.monotonic()))
        if not delivered:
            return False
        partition, offset = delivered[0]
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"dw-health-{token.decode()}",
                             "enable.auto.commit": False, "log_level": 0})
        try:
            consumer.assign([TopicPartition(topic, partition, offset)])
            while time.monotonic() < deadline:
                msg = consumer.poll(0.5)
                if msg is not None and msg.error() is None and msg.value() == token:
                    return True
        finally:
            consumer.close()
    except KafkaException:
        return False
    return False


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)  # reap if it is our child
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True
