"""docker-compose.yml and deploy/: accepted by `docker compose config` (when a docker client
with the compose plugin is present), and consistent with the code: every distillwatch service
loads the same settings (so the same topics and tables), Kafka does not invent topics, the
dashboards are what the generator writes and each of their queries runs on the real schema
under the read-only profile, Grafana reads through a read-only user, Prometheus scrapes the
monitor where it listens, and the Alertmanager example is valid."""

from __future__ import annotations

import os
import re
import runpy
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer.main
import yaml

from distillwatch.settings import Settings, load_settings
from streams.clickhouse import Store, open_store
from streams.migrations import available, migrate
from streams.sql import check_read_only, read_settings
from streams.topics import topic_specs

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DW_SERVICES = ("init", "monitor", "teacher-worker", "student-worker")
DESIGN_TOPICS = {"shadow.requests", "shadow.teacher", "shadow.student", "shadow.catalog", "shadow.labels",
                 "shadow.dlq", "distill.retrain", "distill.models"}


def _compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}`` with nothing set: the default."""
    return re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", lambda m: os.environ.get(m[1]) or (m[2] or ""), value)


def _env(service: dict[str, Any]) -> dict[str, str]:
    return {k: _interpolate(str(v)) for k, v in (service.get("environment") or {}).items()}


def _host_path(service: dict[str, Any], container_path: str) -> Path:
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        if target == container_path:
            return ROOT / source
    raise AssertionError(f"{container_path} is not mounted")


def _settings(service: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Settings:
    env = _env(service)
    config = _host_path(service, env.pop("DISTILLWATCH_CONFIG"))
    for key in list(os.environ):
        if key.startswith("DISTILLWATCH_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        if key.startswith("DISTILLWATCH_"):
            monkeypatch.setenv(key, value)
    return load_settings(config)


def _compose_command() -> list[str] | None:
    """``docker compose`` (v2 plugin), else the standalone ``docker-compose``; None without either."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, timeout=60).returncode == 0:
        return [docker, "compose"]
    standalone = shutil.which("docker-compose")
    return [standalone] if standalone else None


def test_docker_compose_config_accepts_the_file() -> None:
    compose = _compose_command()
    if compose is None:
        pytest.skip("no docker compose client (neither the docker compose plugin nor docker-compose)")
    done = subprocess.run([*compose, "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr


def test_services_use_the_named_images_and_start_in_order() -> None:
    services = _compose()["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")
    assert services["alertmanager"]["image"].startswith("prom/alertmanager:")
    assert services["grafana"]["image"].startswith("grafana/grafana:")
    kafka = services["kafka"]["environment"]
    assert kafka["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    assert kafka["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"  # topics come from `distillwatch init`
    for name in DW_SERVICES:
        assert services[name]["build"] == "."
    assert services["init"]["command"] == ["init"] and services["monitor"]["command"] == ["run"]
    for name in ("monitor", "teacher-worker", "student-worker"):
        assert services[name]["depends_on"]["init"] == {"condition": "service_completed_successfully"}


def test_every_distillwatch_service_loads_the_same_topics_and_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    services = _compose()["services"]
    settings = {name: _settings(services[name], monkeypatch) for name in DW_SERVICES}
    topics = {name: [t.name for t in topic_specs(s)] for name, s in settings.items()}
    assert len({tuple(t) for t in topics.values()}) == 1
    assert DESIGN_TOPICS <= set(topics["monitor"])  # prefix empty: exactly the names of DESIGN §1
    for key in ("kafka.bootstrap_servers", "clickhouse.database"):
        values = {name: _get(s, key) for name, s in settings.items()}
        assert len(set(values.values())) == 1, (key, values)
    dsns = {s.clickhouse_dsn() for s in settings.values()}
    assert len(dsns) == 1
    dsn = urlsplit(dsns.pop())
    assert dsn.hostname == "clickhouse" and dsn.port == 8123 and dsn.username == "distillwatch"
    host, port = settings["monitor"].kafka.bootstrap_servers.split(":")
    assert f"PLAINTEXT://{host}:{port}" in services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert settings["monitor"].clickhouse.database == "distillwatch"  # the dashboards' database
    # the monitor's alerts go to the compose Alertmanager
    (target,) = settings["monitor"].alerting.targets
    url = urlsplit(target.url)  # type: ignore[union-attr]
    assert target.type == "alertmanager" and url.hostname == "alertmanager" and url.port == 9093
    assert "9093:9093" in services["alertmanager"]["ports"]


def _get(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def test_service_commands_parse_with_the_real_cli() -> None:
    from distillwatch.cli import app

    group = typer.main.get_command(app)
    root = group.context_class(group, info_name="distillwatch")
    for name in DW_SERVICES:
        sub_name, *rest = [_interpolate(a) for a in _compose()["services"][name]["command"]]
        sub = group.get_command(root, sub_name)  # type: ignore[attr-defined]
        assert sub is not None, name
        sub.make_context(sub_name, rest, parent=root)  # raises on an unknown or bad option
    with pytest.raises(Exception, match="No such option"):  # the check can fail
        group.get_command(root, "worker").make_context("worker", ["teacher", "--nope"], parent=root)  # type: ignore[attr-defined]


def test_the_image_holds_every_package() -> None:
    import tomllib

    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    copied = re.findall(r"^COPY (\w+) \1$", (ROOT / "Dockerfile").read_text(), re.M)
    assert sorted(copied) == sorted(packages)


# --- Grafana ------------------------------------------------------------------------------------

def _builder() -> dict[str, Any]:
    return runpy.run_path(str(DEPLOY / "grafana" / "build_dashboards.py"))


def _dashboards() -> dict[str, dict[str, Any]]:
    import json

    return {p.stem: json.loads(p.read_text()) for p in sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))}


def test_dashboards_are_the_generated_five_health_groups() -> None:
    files = {p.name: p.read_text() for p in (DEPLOY / "grafana" / "dashboards").glob("*.json")}
    assert files == _builder()["render_all"]()  # regenerate with deploy/grafana/build_dashboards.py
    boards = _dashboards()
    assert sorted(boards) == ["data", "quality", "safety", "traffic", "training"]
    datasource = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/clickhouse.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    for board in boards.values():
        assert board["panels"], board["title"]
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] == uid and panel["targets"][0]["datasource"]["uid"] == uid
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/distillwatch.yml").read_text())
    mounted = [v.split(":")[:2] for v in _compose()["services"]["grafana"]["volumes"]]
    assert ["./deploy/grafana/dashboards", provider["providers"][0]["options"]["path"]] in mounted


def _grafana_sql(sql: str) -> str:
    """The query as Grafana would send it for the last day, 3600 s windows, slice ``all``."""
    sql = re.sub(r"\$__timeFilter\((\w+)\)", r"\1 >= now64(3) - INTERVAL 1 DAY AND \1 <= now64(3)", sql)
    sql = re.sub(r"\$__timeInterval\((\w+)\)", r"toStartOfInterval(toDateTime(\1), INTERVAL 60 SECOND)", sql)
    sql = sql.replace("${window_s}", "3600").replace("${slice}", "all")
    assert "$" not in sql, sql
    return sql


@pytest.fixture(scope="module")
def schema_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    from bench.forensics_data import World, fill

    with open_store(f"chdb://{tmp_path_factory.mktemp('compose')}/ch", owner="test_compose") as store:
        migrate(store)
        from datetime import UTC, datetime, timedelta

        fill(store, World(datetime.now(UTC) - timedelta(hours=12), 12 * 3600, 20_000))
        yield store


def test_every_dashboard_query_runs_on_the_schema_read_only(schema_store: Store) -> None:
    tables = set()
    for migration in available():
        tables |= set(re.findall(r"CREATE TABLE IF NOT EXISTS \{db\}\.(\w+)", migration.sql))
    returned = 0
    for name, board in _dashboards().items():
        queries = [(p["title"], p["targets"][0]["rawSql"]) for p in board["panels"]]
        queries += [(v["name"], v["query"]) for v in board["templating"]["list"] if v["type"] == "query"]
        for title, sql in queries:
            for table in re.findall(r"distillwatch\.(\w+)", sql):
                assert table in tables, (name, title, table)
            result = schema_store.query(check_read_only(_grafana_sql(sql)), settings=read_settings(10_000))
            returned += bool(result.result_rows)
    assert returned >= 20  # most panels show data on a filled store, not just parse


def test_grafana_reads_through_a_read_only_user() -> None:
    ds = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/clickhouse.yml").read_text())["datasources"][0]
    assert ds["type"] == "grafana-clickhouse-datasource"
    json_data = ds["jsonData"]
    services = _compose()["services"]
    assert json_data["host"] in services and services[json_data["host"]]["image"].startswith("clickhouse/")
    assert json_data["port"] == 8123 and json_data["protocol"] == "http"
    assert json_data["defaultDatabase"] == "distillwatch"
    users = ET.parse(DEPLOY / "clickhouse/users.d/distillwatch.xml").getroot()
    user = users.find(f"users/{json_data['username']}")
    assert user is not None
    profile = users.find(f"profiles/{user.findtext('profile')}")
    assert profile is not None and profile.findtext("readonly") == "1"
    assert [q.text for q in user.findall("grants/query")] == ["GRANT SELECT ON distillwatch.*"]
    assert profile.find("constraints/max_execution_time/changeable_in_readonly") is not None
    # both ends read the password from the same variable, and compose sets it for both
    secret = ds["secureJsonData"]["password"].lstrip("$").strip("{}")
    assert user.find("password").get("from_env") == secret  # type: ignore[union-attr]
    assert secret in services["grafana"]["environment"] and secret in services["clickhouse"]["environment"]
    writer = users.find("users/distillwatch")
    assert writer is not None and writer.find("password").get("from_env") in services["clickhouse"]["environment"]


# --- Prometheus and Alertmanager ---------------------------------------------------------------

def test_prometheus_scrapes_the_monitor_where_it_listens() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    (target,) = job["static_configs"][0]["targets"]
    host, port = target.split(":")
    monitor = _compose()["services"]["monitor"]
    assert host == "monitor" and port == _env(monitor)["DISTILLWATCH_HTTP__PORT"]
    assert f"{port}:{port}" in monitor["ports"]


def test_alertmanager_example_config_is_valid() -> None:
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.skip("amtool not found (Debian package prometheus-alertmanager)")
    done = subprocess.run([amtool, "check-config", str(DEPLOY / "alertmanager/alertmanager.yml")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    mounted = _compose()["services"]["alertmanager"]["volumes"][0].split(":")[0]
    assert mounted == "./deploy/alertmanager/alertmanager.yml"
