"""The project's root exception and the wire-contract error.

Every distillwatch error derives from :class:`DistillwatchError`, so a caller can catch
the project's failures without catching programming errors. A :class:`ContractError`
lists each broken rule as a :class:`Problem` naming the field and the rule, which is what
goes to the dead-letter topic and to stderr.
"""

from __future__ import annotations

from dataclasses import dataclass


class DistillwatchError(Exception):
    """Root of every error raised on purpose by distillwatch."""


class ConfigError(DistillwatchError):
    """Configuration that cannot work; raised at start-up, naming the key."""


@dataclass(frozen=True)
class Problem:
    """One broken rule: where (dotted field path), which rule, and a readable message."""

    field: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class ContractError(DistillwatchError):
    """A message that breaks the wire contract (DESIGN §4)."""

    def __init__(self, kind: str, problems: list[Problem]) -> None:
        self.kind = kind
        self.problems = problems
        super().__init__(f"invalid {kind}: " + "; ".join(str(p) for p in problems))

    @property
    def fields(self) -> list[str]:
        """The dotted paths of the offending fields, in order."""
        return [p.field for p in self.problems]
