"""Shared bits of the CLI: consoles, failing with one line, the settings of this run."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

from distillwatch.settings import Settings

# soft_wrap: never fold lines at the terminal width; a reason must stay one line (DESIGN §10)
# and printed paths must stay whole when output is piped.
console = Console(soft_wrap=True)
console_err = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``distillwatch: error: …`` on stderr and exit non-zero."""
    console_err.print(f"distillwatch: error: {message}", markup=False, highlight=False)
    raise typer.Exit(code)


def settings_of(ctx: typer.Context) -> Settings:
    obj = ctx.find_root().obj
    assert isinstance(obj, Settings)
    return obj
