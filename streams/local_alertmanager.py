"""A throwaway Prometheus Alertmanager (Debian's ``prometheus-alertmanager``) for tests and the demo.

``LocalAlertmanager(work_dir, config_yaml).start()`` writes the config and a storage
directory under ``work_dir``, runs the binary on a free port of 127.0.0.1 with clustering
off, and returns once ``GET /-/ready`` answers 200. It never touches the system service
(port 9093, /var/lib/prometheus) that the Debian package may have started. ``stop()`` sends
SIGTERM (SIGKILL after a grace period). The binary is ``$ALERTMANAGER_BIN``, else
``prometheus-alertmanager`` or ``alertmanager`` on PATH.

Run one in the foreground: ``python -m streams.local_alertmanager [WEBHOOK_URL]``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from schemas.errors import DistillwatchError

INSTALL_HINT = "install Debian's prometheus-alertmanager (apt-get install prometheus-alertmanager) or set ALERTMANAGER_BIN"
NULL_CONFIG = """\
route:
  receiver: "null"
receivers:
  - name: "null"
"""


class AlertmanagerSetupError(DistillwatchError):
    """The local Alertmanager binary is missing, rejects its config, or does not become ready."""


def find_binary() -> str:
    """Path of the Alertmanager binary, or AlertmanagerSetupError saying what to install."""
    explicit = os.environ.get("ALERTMANAGER_BIN")
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise AlertmanagerSetupError(f"ALERTMANAGER_BIN={explicit} is not an executable file")
        return explicit
    for name in ("prometheus-alertmanager", "alertmanager"):
        found = shutil.which(name) or (f"/usr/bin/{name}" if os.access(f"/usr/bin/{name}", os.X_OK) else None)
        if found:
            return found
    raise AlertmanagerSetupError(f"Alertmanager not found: {INSTALL_HINT}")


def webhook_config(url: str, *, group_wait: str = "1s", group_interval: str = "1s",
                   repeat_interval: str = "4h", send_resolved: bool = True) -> str:
    """A config routing every alert, one group per alert, to one webhook receiver.

    Short group timings suit tests: a new alert is forwarded about ``group_wait`` after it
    arrives, its resolution within ``group_interval``.
    """
    return (
        "route:\n"
        "  receiver: hook\n"
        "  group_by: ['...']\n"
        f"  group_wait: {group_wait}\n"
        f"  group_interval: {group_interval}\n"
        f"  repeat_interval: {repeat_interval}\n"
        "receivers:\n"
        "  - name: hook\n"
        "    webhook_configs:\n"
        f"      - url: {json.dumps(url)}\n"
        f"        send_resolved: {'true' if send_resolved else 'false'}\n"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the caller binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class LocalAlertmanager:
    """One Alertmanager process with its own config, storage and port."""

    def __init__(self, work_dir: Path, config_yaml: str = NULL_CONFIG, *, host: str = "127.0.0.1",
                 port: int = 0, binary: str | None = None) -> None:
        self.work_dir = Path(work_dir)
        self.config_yaml = config_yaml
        self.host = host
        self.port = port
        self.binary = binary
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:41234`` (what an alertmanager target's url is)."""
        return f"http://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.work_dir / "alertmanager.log"

    def start(self, timeout_s: float = 30.0) -> LocalAlertmanager:
        """Start and wait until ready; a port taken meanwhile is retried on another one."""
        binary = self.binary or find_binary()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        config = self.work_dir / "alertmanager.yml"
        config.write_text(self.config_yaml, encoding="utf-8")
        storage = self.work_dir / "storage"
        storage.mkdir(exist_ok=True)
        fixed_port = self.port != 0
        # A free port can be taken between choosing and binding it: an early exit is retried
        # on a fresh port; a bad config exits every time and is reported with the log tail.
        for _ in range(1 if fixed_port else 3):
            if not fixed_port:
                self.port = free_port(self.host)
            if self._launch(binary, config, storage, timeout_s):
                return self
        raise AlertmanagerSetupError(f"Alertmanager exited at start: {self.log_tail()}")

    def _launch(self, binary: str, config: Path, storage: Path, timeout_s: float) -> bool:
        """True once ready; False if the process exited early; raises when it is not ready in time."""
        with open(self.log_path, "wb") as log:
            self._proc = subprocess.Popen(
                [binary, f"--config.file={config}", f"--storage.path={storage}",
                 f"--web.listen-address={self.host}:{self.port}", "--cluster.listen-address=",
                 "--log.level=info"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    self._proc = None
                    return False
                try:
                    if client.get(f"{self.url}/-/ready").status_code == 200:
                        return True
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        self.stop()
        raise AlertmanagerSetupError(f"Alertmanager not ready at {self.url} after {timeout_s:g} s: {self.log_tail()}")

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited after ``grace_s``."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=grace_s)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 3) -> str:
        """The last log lines, error lines first (for one-line failure messages)."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        all_lines = text.strip().splitlines()
        errors = [line for line in all_lines if "level=error" in line]
        return " | ".join((errors or all_lines)[-lines:]) or "(empty log)"

    def alerts(self, client: httpx.Client | None = None) -> list[dict[str, object]]:
        """Alertmanager's own view: ``GET /api/v2/alerts``."""
        c = client or httpx.Client(timeout=10.0)
        try:
            response = c.get(f"{self.url}/api/v2/alerts")
            response.raise_for_status()
            data = response.json()
        finally:
            if client is None:
                c.close()
        assert isinstance(data, list)
        return data

    def __enter__(self) -> LocalAlertmanager:
        return self.start() if not self.running else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str]) -> int:
    """Run in the foreground until Ctrl-C; with a URL argument, forward alerts to that webhook."""
    config = webhook_config(argv[0]) if argv else NULL_CONFIG
    with tempfile.TemporaryDirectory(prefix="distillwatch-am-") as tmp:
        am = LocalAlertmanager(Path(tmp), config).start()
        print(f"Alertmanager ready at {am.url} (log {am.log_path}); Ctrl-C stops it", flush=True)
        try:
            while am.running:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
        finally:
            am.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
