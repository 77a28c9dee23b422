"""Alert rules as data (DESIGN §6): the YAML schema, its validation, and the built-in defaults.

A rules file is a mapping with ``rules`` (a list), and optionally ``references`` (named
numbers a threshold may use) and ``fdr`` (the false-discovery rate held across the slices of
one window, default 0.05). Each rule::

    name: confident_errors            # unique; part of the alert fingerprint
    metric: confident_error_rate      # a metric name of DESIGN §5
    slices: "*"                       # glob(s) over slice keys: "all", "region=*", "freshness=new"
    exclude: []                       # globs to leave out, e.g. ["intent=*", "risk=high"]
    condition: "> 0.05"               # strict: "< X" or "> X"
    also: {metric: ..., condition: ...}   # optional second condition, same window and slice
    slice_thresholds: {}              # per-slice threshold, glob -> X (first match wins)
    min_support: 200                  # requests in the slice and window
    for: 2                            # consecutive breaching windows before it fires
    severity: warning                 # critical | warning | info
    actions: []                       # page | ticket | retrain
    cooldown_s: 900                   # no re-fire of a resolved fingerprint within this

X is a number, a reference name, or ``A * B``, ``A + B``, ``A - B`` of two of them
(``1.5 * planned_fallback_rate``, ``teacher_match_baseline - 0.08``; ``×`` and ``−`` are
accepted too). Globs use :func:`fnmatch.fnmatchcase`, where ``*`` also crosses commas, so
``region=*`` selects the cross ``region=eu,device=ios`` as well. Everything is checked at
load; a mistake raises :class:`~schemas.errors.ConfigError` naming the rule and the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from importlib import resources
from pathlib import Path

import yaml  # type: ignore[import-untyped]  # no types-PyYAML in the dev group yet

from evaluators.rule_syntax import Also, Condition, RuleSyntaxError, parse_rule
from schemas.errors import ConfigError

__all__ = ["DEFAULT_REFERENCES", "Also", "Condition", "Rule", "RuleSet"]

DEFAULT_REFERENCES: Mapping[str, float] = {"planned_fallback_rate": 0.10, "teacher_match_baseline": 0.85}
"""Used where neither the caller nor the rules file names a value."""

TOP_KEYS = frozenset({"rules", "references", "fdr"})


@dataclass(frozen=True)
class Rule:
    """One validated rule; see the module docstring for the meaning of each field."""

    name: str
    metric: str
    condition: Condition
    slices: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    also: Also | None = None
    slice_thresholds: tuple[tuple[str, float], ...] = ()
    min_support: int = 200
    for_windows: int = 2
    severity: str = "warning"
    actions: tuple[str, ...] = ()
    cooldown_s: float = 900.0
    description: str = ""

    def selects(self, slice_key: str) -> bool:
        """Whether this rule watches the slice: matched by ``slices``, not by ``exclude``."""
        return any(fnmatchcase(slice_key, g) for g in self.slices) and not any(
            fnmatchcase(slice_key, g) for g in self.exclude
        )

    def condition_for(self, slice_key: str) -> Condition:
        """The condition with the slice's own threshold where ``slice_thresholds`` names one."""
        for glob, threshold in self.slice_thresholds:
            if fnmatchcase(slice_key, glob):
                return Condition(self.condition.op, threshold, f"{self.condition.op} {threshold:g}")
        return self.condition


@dataclass(frozen=True)
class RuleSet:
    """The rules of one run, the FDR across slices, and the resolved reference values."""

    rules: tuple[Rule, ...]
    fdr: float = 0.05
    references: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = [r.name for r in self.rules]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"rule names must be unique; repeated: {dupes}")

    def __getitem__(self, name: str) -> Rule:
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return any(r.name == name for r in self.rules)

    @classmethod
    def load(cls, path: Path | None = None, references: Mapping[str, float] | None = None) -> RuleSet:
        """Rules from a YAML file, or the built-in defaults when ``path`` is None.

        ``references`` (e.g. the configured ``planned_fallback_rate``) override the built-in
        reference values; a ``references`` section in the file overrides both.
        """
        if path is None:
            text = resources.files("evaluators").joinpath("default_rules.yaml").read_text("utf-8")
            source = "default_rules.yaml"
        else:
            try:
                text = Path(path).read_text("utf-8")
            except OSError as exc:
                raise ConfigError(f"cannot read rules file {path}: {exc.strerror or exc}") from exc
            source = str(path)
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
        return cls.from_data(data, references, source)

    @classmethod
    def from_data(
        cls, data: object, references: Mapping[str, float] | None = None, source: str = "rules"
    ) -> RuleSet:
        """Validate decoded YAML into a rule set; every error names the rule and the key."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a mapping with a 'rules' list")
        unknown = sorted(set(map(str, data)) - TOP_KEYS)
        if unknown:
            raise ConfigError(f"{source}: unknown top-level key {unknown[0]!r}; allowed: {sorted(TOP_KEYS)}")
        refs = dict(DEFAULT_REFERENCES) | dict(references or {})
        file_refs = data.get("references") or {}
        if not isinstance(file_refs, dict) or not all(
            isinstance(k, str) and _is_number(v) for k, v in file_refs.items()
        ):
            raise ConfigError(f"{source}: key 'references': expected a mapping of name to number")
        refs |= {k: float(v) for k, v in file_refs.items()}
        fdr = data.get("fdr", 0.05)
        if not _is_number(fdr) or not 0 < fdr < 1:
            raise ConfigError(f"{source}: key 'fdr': expected a number in (0, 1), got {fdr!r}")
        raw_rules = data.get("rules")
        if not isinstance(raw_rules, list):
            raise ConfigError(f"{source}: key 'rules': expected a list of rules")
        rules = []
        for i, raw in enumerate(raw_rules, start=1):
            label = raw.get("name") if isinstance(raw, dict) and isinstance(raw.get("name"), str) else f"#{i}"
            try:
                rules.append(Rule(**parse_rule(raw, refs)))
            except RuleSyntaxError as exc:
                raise ConfigError(f"{source}: rule {label!r}: key {exc.key!r}: {exc.problem}") from exc
        return cls(tuple(rules), float(fdr), refs)


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)
