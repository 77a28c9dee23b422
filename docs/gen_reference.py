"""Regenerate the generated parts of docs/configuration.md from the code.

    python docs/gen_reference.py           # rewrite the generated sections in place
    python docs/gen_reference.py --check   # exit 1 if the file is out of date

The settings tables come from the pydantic models in ``distillwatch/settings.py`` (every
setting: key, type with its bounds, default, environment variable, description); the target
tables from ``streams/alerting/targets.py``; the default rule set is
``evaluators/default_rules.yaml`` verbatim. Each goes between a pair of markers
``<!-- generated:NAME begin -->`` / ``<!-- generated:NAME end -->``; text outside the markers
is written by hand. tests/unit/test_docs_reference.py fails when the file is out of date.
"""

from __future__ import annotations

import argparse
import re
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from distillwatch.settings import ENV_PREFIX, Settings  # noqa: E402
from streams.alerting.targets import (  # noqa: E402
    AlertmanagerTarget,
    PagerDutyTarget,
    SlackTarget,
    WebhookTarget,
)

CONFIGURATION_MD = ROOT / "docs" / "configuration.md"
DEFAULT_RULES = ROOT / "evaluators" / "default_rules.yaml"

NOTES: dict[str, str] = {
    # Settings whose Field has no description: what a reader needs to know.
    "data_dir": "where the embedded store, the prompt-hash key and retrain jobs live",
    "topic_prefix": "put in front of every topic name (e.g. `staging.`); empty in production",
    "kafka.bootstrap_servers": "Kafka brokers, comma-separated `host:port`",
    "kafka.security_protocol": "librdkafka `security.protocol`",
    "kafka.sasl_mechanism": "librdkafka `sasl.mechanism`: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER",
    "kafka.sasl_username": "librdkafka `sasl.username`",
    "kafka.sasl_password": "librdkafka `sasl.password` (a secret: never printed)",
    "kafka.ssl_ca_location": "librdkafka `ssl.ca.location`: the CA bundle that signed the brokers' certificates",
    "kafka.client_id": "librdkafka `client.id`, shown in broker logs and quotas",
    "local_kafka.version": "Apache Kafka release that `distillwatch kafka fetch` resolves",
    "local_kafka.host": "address the local broker listens on",
    "local_kafka.port": "client port of the local broker",
    "local_kafka.controller_port": "KRaft controller port of the local broker",
    "local_kafka.heap": "JVM heap of the local broker (`512m`, `1g`)",
    "local_kafka.start_timeout_s": "how long `kafka start` waits for a produce and a consume to succeed",
    "topics.partitions": "partitions of every input and output topic that `init` creates; "
                         "the most evaluator instances that can share the work",
    "topics.replication_factor": "replication factor of the topics `init` creates (3 on a production cluster)",
    "clickhouse.dsn": "`chdb:///abs/path` (embedded), `http(s)://user:pass@host:8123/` (server); "
                      "default: the embedded store `DATA_DIR/clickhouse` (a secret: never printed)",
    "clickhouse.database": "the database holding every distillwatch table",
    "clickhouse.query_timeout_s": "time limit of one query (also the `max_execution_time` of read-only SQL)",
    "clickhouse.lock_timeout_s": "how long to wait for another process's lock on the embedded store",
    "evaluator.group_id": "Kafka consumer group of the evaluators; also the start of the transactional id, "
                          "so give every deployment sharing a Kafka cluster its own",
    "evaluator.idle_flush_s": "input quiet this long: evaluate waiting requests and emit open windows",
    "evaluator.batch_size": "records read per poll",
    "privacy.payload_share": "share of requests whose redacted payload is kept in `shadow_payloads`",
    "privacy.example_share": "share of traffic kept in `distill_examples` for retraining",
    "privacy.order_id_pattern": "regular expression of order ids, redacted from payloads",
    "http.host": "address of the monitor's HTTP API",
    "http.port": "port of the monitor's HTTP API (`/healthz`, `/metrics`, `POST /sql`)",
    "evaluation.intents": "the intent classes, in tie-breaking order",
    "evaluation.high_risk": "the escalation classes: recall, precision per class, always routed to the teacher",
    "evaluation.windows_s": "tumbling window sizes in seconds; the first is the alerting window",
    "evaluation.grace_s": "how far behind the newest request time a window stays open",
    "evaluation.fallback_threshold": "route to the teacher when the student's top-1 is below this",
    "evaluation.fallback_margin": "... or when top-1 minus top-2 is below this",
    "evaluation.naive_fallback_threshold": "the plain `top-1 < X` router that `fallback_rate_naive` measures",
    "evaluation.confident_threshold": "top-1 at or above this is confident (confident errors)",
    "evaluation.student_cost_per_1k": "dollars per 1,000 requests the student serves",
    "evaluation.teacher_cost_per_1k": "dollars per 1,000 requests the teacher serves",
    "evaluation.daily_volume": "requests per day, for the daily cost projections",
    "evaluation.planned_fallback_rate": "the fallback rate the cost plan assumes",
    "evaluation.new_title_days": "a title introduced at most this many days before a request is new",
    "alerting.retry.base_delay_s": "wait after the first failed attempt; doubles each time",
    "alerting.retry.max_delay_s": "longest wait between attempts",
    "alerting.drift.enabled": "run the drift detectors on every judged alerting window",
}

TARGET_NOTES: dict[str, str] = {
    # (type.field) for target fields whose Field has no description
    "*.type": "which kind of target",
    "webhook.url": "the receiver's URL (http or https)",
    "slack.url": "the incoming-webhook URL Slack gave you (a secret: it is the credential)",
    "pagerduty.url": "the Events API v2 endpoint",
    "pagerduty.routing_key": "the integration's routing key (a secret)",
}


@dataclass(frozen=True)
class Row:
    key: str
    type: str
    default: str
    env: str
    description: str


def env_name(key: str) -> str:
    """The environment variable of a dotted settings key."""
    return ENV_PREFIX + key.replace(".", "__").upper()


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def type_text(annotation: Any) -> str:
    """A short, readable name of a field's type."""
    origin = get_origin(annotation)
    if origin is Literal:
        return " \\| ".join(f"`{a}`" for a in get_args(annotation))
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        inner = " \\| ".join(type_text(a) for a in args)
        return f"{inner} \\| none" if len(args) < len(get_args(annotation)) else inner
    if origin is typing.Annotated:
        return type_text(get_args(annotation)[0])
    if origin in (list, dict):
        return f"{origin.__name__}[{', '.join(type_text(a) for a in get_args(annotation))}]"
    if annotation is SecretStr:
        return "secret"
    if _is_model(annotation):
        return annotation.__name__
    return getattr(annotation, "__name__", str(annotation))


def _bound(value: float) -> str:
    """A bound as written: ``0.5``, ``65535``, ``1,048,576`` (never ``1.04858e+06``)."""
    return f"{value:g}" if abs(value) < 1e6 else f"{value:,.0f}"


def bounds_text(field: FieldInfo) -> str:
    """The field's constraints (≥, >, ≤, <, pattern, at least N items)."""
    parts = []
    for m in field.metadata:
        if isinstance(m, annotated_types.Ge):
            parts.append(f"≥ {_bound(m.ge)}")
        elif isinstance(m, annotated_types.Gt):
            parts.append(f"> {_bound(m.gt)}")
        elif isinstance(m, annotated_types.Le):
            parts.append(f"≤ {_bound(m.le)}")
        elif isinstance(m, annotated_types.Lt):
            parts.append(f"< {_bound(m.lt)}")
        elif isinstance(m, annotated_types.MinLen):
            text_like = field.annotation is str
            parts.append("not empty" if text_like and m.min_length == 1 else
                         f"≥ {m.min_length} {'characters' if text_like else 'items'}")
        elif getattr(m, "pattern", None):
            parts.append(f"pattern `{m.pattern}`")
    return ", ".join(parts)


def default_text(value: Any) -> str:
    """A default as a reader would write it in YAML; the home directory as ``~``."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, Path):
        text = str(value)
        home = str(Path.home())
        if text.startswith(home + "/"):
            text = "~" + text[len(home):]
        return f"`{text}`"
    if isinstance(value, str):
        return f'`"{value}"`' if value == "" or value.strip() != value else f"`{value}`"
    if isinstance(value, float):
        return f"`{value:g}`" if abs(value) < 1e6 else f"`{value:,.0f}`"
    if isinstance(value, int):
        return f"`{value:,}`" if value >= 10_000 else f"`{value}`"
    if isinstance(value, (list, dict)):
        import json

        return f"`{json.dumps(value)}`"
    return f"`{value}`"


def _default_of(field: FieldInfo) -> Any:
    if field.default_factory is not None:
        return field.default_factory()  # type: ignore[call-arg]
    return None if field.default is PydanticUndefined else field.default


def _cell(text: str) -> str:
    """Text fit for a Markdown table cell: pipes escaped, reST double backticks made single."""
    return text.replace("``", "`").replace("|", "\\|").replace("\n", " ")


def _describe(key: str, field: FieldInfo) -> str:
    return _cell(NOTES.get(key) or field.description or "")


def settings_rows(model: type[BaseModel] = Settings, instance: BaseModel | None = None,
                  prefix: str = "") -> list[Row]:
    """One row per leaf setting; nested models become dotted keys."""
    rows = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        value = getattr(instance, name) if instance is not None else _default_of(field)
        annotation = field.annotation
        if _is_model(annotation):
            sub = value if value is not None else annotation()
            rows += settings_rows(annotation, sub, key + ".")
            continue
        if key == "alerting.targets":
            kind = "list of targets (below)"
            rows.append(Row(key, kind, "`[]`", env_name(key), "where alerts are delivered; JSON in the environment"))
            continue
        kind = type_text(annotation)
        bounds = bounds_text(field)
        if bounds:
            kind += f" ({_cell(bounds)})"
        rows.append(Row(key, kind, _cell(default_text(value)), env_name(key), _describe(key, field)))
    return rows


def target_rows(model: type[BaseModel]) -> list[Row]:
    rows = []
    for name, field in model.model_fields.items():
        kind = type_text(field.annotation)
        bounds = bounds_text(field)
        if bounds:
            kind += f" ({bounds})"
        required = field.is_required()
        default = "required" if required else _cell(default_text(_default_of(field)))
        kind_name = model.model_fields["type"].default
        desc = (TARGET_NOTES.get(f"{kind_name}.{name}") or TARGET_NOTES.get(f"*.{name}")
                or field.description or "")
        rows.append(Row(name, kind, default, "", _cell(desc)))
    return rows


def _section_of(key: str) -> str:
    return key.split(".")[0] if "." in key else ""


def settings_markdown() -> str:
    out = []
    rows = settings_rows()
    sections: dict[str, list[Row]] = {}
    for row in rows:
        sections.setdefault(_section_of(row.key), []).append(row)
    for section, items in sections.items():
        title = f"`{section}`" if section else "top level"
        doc = ""
        if section:
            field = Settings.model_fields[section]
            doc = _cell((field.annotation.__doc__ or "").strip().split("\n\n")[0])
        out.append(f"#### {title}\n")
        if doc:
            out.append(f"{doc}\n")
        out.append("| setting | type | default | environment variable | meaning |")
        out.append("|---|---|---|---|---|")
        for r in items:
            out.append(f"| `{r.key}` | {r.type} | {r.default} | `{r.env}` | {r.description} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def targets_markdown() -> str:
    out = []
    for model in (AlertmanagerTarget, WebhookTarget, SlackTarget, PagerDutyTarget):
        kind = model.model_fields["type"].default
        doc = _cell((model.__doc__ or "").strip().split("\n\n")[0])
        out.append(f"`type: {kind}`: {doc}\n")
        out.append("| field | type | default | meaning |")
        out.append("|---|---|---|---|")
        for r in target_rows(model):
            out.append(f"| `{r.key}` | {r.type} | {r.default} | {r.description} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def default_rules_markdown() -> str:
    text = DEFAULT_RULES.read_text(encoding="utf-8").rstrip("\n")
    return f"```yaml\n{text}\n```\n"


GENERATORS = {
    "settings": settings_markdown,
    "targets": targets_markdown,
    "default-rules": default_rules_markdown,
}


def render(text: str) -> str:
    """``text`` with every generated section replaced by its current content."""
    for name, make in GENERATORS.items():
        pattern = re.compile(
            rf"(<!-- generated:{name} begin -->\n)(.*?)(<!-- generated:{name} end -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"{CONFIGURATION_MD}: markers for generated section {name!r} are missing")
        body = make()
        text = pattern.sub(lambda m, body=body: m.group(1) + body + m.group(3), text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/configuration.md is out of date")
    args = parser.parse_args(argv)
    current = CONFIGURATION_MD.read_text(encoding="utf-8")
    fresh = render(current)
    if args.check:
        if fresh != current:
            print(f"{CONFIGURATION_MD} is out of date: run python docs/gen_reference.py", file=sys.stderr)
            return 1
        return 0
    if fresh != current:
        CONFIGURATION_MD.write_text(fresh, encoding="utf-8")
        print(f"updated {CONFIGURATION_MD}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
