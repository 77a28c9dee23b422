"""``distillwatch worker teacher|student --backend http|replay|transformers|sim``."""

from __future__ import annotations

import os
import threading
from enum import Enum
from pathlib import Path
from typing import Any, Optional

import orjson
import typer

from distillwatch.cli.context import console_err, fail, settings_of
from distillwatch.settings import Settings
from schemas.errors import DistillwatchError
from streams.backends.base import Backend


class Role(str, Enum):
    teacher = "teacher"
    student = "student"


class BackendKind(str, Enum):
    http = "http"
    replay = "replay"
    transformers = "transformers"
    sim = "sim"


def worker(
    ctx: typer.Context,
    role: Role = typer.Argument(..., help="Which model this worker answers for: teacher or student."),
    backend: BackendKind = typer.Option(..., "--backend", help="Where answers come from."),
    endpoint: Optional[str] = typer.Option(None, "--endpoint", help="http: the model's URL (base URL with --openai)."),
    openai: bool = typer.Option(False, "--openai", help="http: speak OpenAI chat completions (POST /v1/chat/completions)."),
    model_dir: Optional[Path] = typer.Option(None, "--model-dir", help="transformers: saved sequence-classification model and tokenizer."),
    replay_log: Optional[Path] = typer.Option(None, "--replay-log", help="replay: the JSON-lines log whose recorded answers to publish."),
    model: Optional[str] = typer.Option(None, "--model", help="Model name to publish (and to request with --openai)."),
    model_version: Optional[str] = typer.Option(None, "--model-version", help="Model version to publish."),
    request_template: Optional[Path] = typer.Option(None, "--request-template", help='http: JSON file, the request body with "{prompt}", "{request_id}", "{slice}", "{entities}" placeholders.'),
    response_map: list[str] = typer.Option([], "--map", help="http: FIELD=dotted.path in the reply, FIELD one of intent_probs, answer, claims, cost_usd (repeatable)."),
    api_key_env: Optional[str] = typer.Option(None, "--api-key-env", help="http: environment variable holding a bearer token to send."),
    cost_per_1k: Optional[float] = typer.Option(None, "--cost-per-1k-tokens", min=0, help="--openai: dollars per 1000 tokens, for cost_usd."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Requests per batch."),
    batch_wait_ms: int = typer.Option(200, "--batch-wait-ms", min=1, help="Longest wait to fill a batch."),
    concurrency: int = typer.Option(8, "--concurrency", min=1, help="http: requests in flight at once."),
    timeout_s: float = typer.Option(10.0, "--timeout-s", min=0.001, help="http: timeout of one attempt."),
    retries: int = typer.Option(3, "--retries", min=0, help="http: retries after a timeout, 5xx or 429."),
    sim_truth: list[Path] = typer.Option([], "--sim-truth", help="sim: truth file written by simulate next to its log (repeatable; several scenarios at once)."),
    scenario: Optional[str] = typer.Option(None, "--scenario", help="sim: scenario to simulate when no --sim-truth is given (default clean)."),
    seed: int = typer.Option(0, "--seed", help="sim: the scenario's seed (with --scenario)."),
    max_messages: Optional[int] = typer.Option(None, "--max-messages", min=1, help="Stop after this many records (default: run until stopped)."),
    idle_exit_s: Optional[float] = typer.Option(None, "--idle-exit-s", min=0.1, help="Stop after this long without records (default: never)."),
) -> None:
    """Answer shadow.requests with a model and publish a ModelResponse per request to shadow.<role>."""
    from streams.stopping import install_stop_signals
    from streams.worker import WorkerOptions, run_worker, summary

    settings = settings_of(ctx)
    _check_combination(backend, endpoint, openai, model_dir, replay_log, request_template, response_map)
    if backend is not BackendKind.sim and (sim_truth or scenario is not None):
        fail("--sim-truth and --scenario apply to --backend sim only")
    if sim_truth and scenario is not None:
        fail("--sim-truth names the scenario already; drop --scenario")
    if openai and not model:
        fail("--openai needs --model NAME, the model the endpoint serves")
    try:
        model_backend = _backend(backend, role.value, settings, endpoint=endpoint, openai=openai,
                                 model_dir=model_dir, replay_log=replay_log, model=model,
                                 model_version=model_version, request_template=request_template,
                                 response_map=response_map, api_key_env=api_key_env,
                                 cost_per_1k=cost_per_1k, batch_size=batch_size,
                                 concurrency=concurrency, timeout_s=timeout_s, retries=retries,
                                 sim_truth=sim_truth, scenario=scenario, seed=seed)
    except (DistillwatchError, ImportError) as exc:
        fail(str(exc))
    stop = threading.Event()
    install_stop_signals(stop)
    options = WorkerOptions(role=role.value, batch_size=batch_size, batch_wait_ms=batch_wait_ms,
                            max_messages=max_messages, idle_exit_s=idle_exit_s)
    log = lambda line: console_err.print(line, markup=False, highlight=False)  # noqa: E731
    try:
        stats = run_worker(settings, model_backend, options, stop=stop, log=log)
    except DistillwatchError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted by a second signal; the batch in progress is answered again on restart", 130)
    finally:
        model_backend.close()
    log(summary(stats, role.value))
    for reason in stats.invalid_reasons[:3]:
        log(f"skipped: {reason}")


def _check_combination(backend: BackendKind, endpoint: str | None, openai: bool,
                       model_dir: Path | None, replay_log: Path | None,
                       request_template: Path | None, response_map: list[str]) -> None:
    """One-line errors for options that cannot work together."""
    needs = {BackendKind.http: ("--endpoint", endpoint), BackendKind.replay: ("--replay-log", replay_log),
             BackendKind.transformers: ("--model-dir", model_dir)}
    flag, value = needs.get(backend, ("", True))
    if value is None:
        fail(f"--backend {backend.value} needs {flag}")
    for other, (other_flag, other_value) in needs.items():
        if other is not backend and other_value is not None:
            fail(f"{other_flag} applies to --backend {other.value}, not --backend {backend.value}")
    if backend is not BackendKind.http and (openai or request_template or response_map):
        fail("--openai, --request-template and --map apply to --backend http only")
    if openai and (request_template or response_map):
        fail("--openai fixes the request and reply format; drop --request-template and --map")


def _backend(kind: BackendKind, role: str, settings: Settings, **o: Any) -> Backend:
    if kind is BackendKind.sim:
        from streams.backends.sim import SimBackend

        if o["sim_truth"]:
            return SimBackend.from_truth(o["sim_truth"], role)
        return SimBackend.from_scenario(o["scenario"] or "clean", o["seed"], role)
    if kind is BackendKind.replay:
        from streams.backends.replay import ReplayBackend

        return ReplayBackend.from_file(o["replay_log"], role)
    if kind is BackendKind.transformers:
        from streams.backends.transformers import TransformersBackend

        return TransformersBackend(o["model_dir"], model_name=o["model"],
                                   model_version=o["model_version"], max_batch=o["batch_size"])
    from streams.backends.http import HttpBackend, HttpBackendConfig

    template = {} if o["request_template"] is None else {"request_template": _template(o["request_template"])}
    config = HttpBackendConfig(
        endpoint=o["endpoint"], openai=o["openai"], model=o["model"],
        model_version=o["model_version"] or "unknown", timeout_s=o["timeout_s"],
        retries=o["retries"], concurrency=o["concurrency"], intents=settings.evaluation.intents,
        cost_per_1k_tokens=o["cost_per_1k"], headers=_auth(o["api_key_env"]),
        response_map=_mapping(o["response_map"]), **template)
    return HttpBackend(config)


def _auth(env_name: str | None) -> dict[str, str]:
    if env_name is None:
        return {}
    token = os.environ.get(env_name)
    if not token:
        fail(f"--api-key-env {env_name}: that environment variable is not set")
    return {"authorization": f"Bearer {token}"}


def _mapping(items: list[str]) -> dict[str, str]:
    mapping = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            fail(f"--map {item!r}: expected FIELD=dotted.path")
        mapping[name.strip()] = path.strip()
    return mapping


def _template(path: Path) -> Any:
    try:
        return orjson.loads(path.read_bytes())
    except OSError as exc:
        fail(f"--request-template {path}: {exc.strerror}")
    except orjson.JSONDecodeError as exc:
        fail(f"--request-template {path} is not JSON: {exc}")
