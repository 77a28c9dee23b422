"""Shared bits of the CLI: consoles, failing with one line, the settings of this run."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

from distillwatch.settings import Settings

console = Console()
console_err = Console(stderr=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``distillwatch: error: …`` on stderr and exit non-zero."""
    console_err.print(f"distillwatch: error: {message}", markup=False, highlight=False)
    raise typer.Exit(code)


def settings_of(ctx: typer.Context) -> Settings:
    obj = ctx.find_root().obj
    assert isinstance(obj, Settings)
    return obj
