"""``distillwatch schema export``: JSON Schema for the wire contract."""

from __future__ import annotations

from pathlib import Path

import typer

from distillwatch.cli.context import console
from schemas.jsonschema import export as export_schemas

app = typer.Typer(help="The wire contract (DESIGN §4).", no_args_is_help=True)


@app.command()
def export(directory: Path = typer.Argument(Path("schemas-json"), help="Output directory.")) -> None:
    """Write one JSON Schema file per message."""
    for path in export_schemas(directory):
        console.print(str(path))
