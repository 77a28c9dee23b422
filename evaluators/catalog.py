"""Claims checked against the authoritative catalog (DESIGN §5).

A claim is *checkable* when its entity is in the catalog and the catalog has that attribute;
it is *correct* when its value (a list as a set, a scalar as a one-element set) is a subset
of the catalog's values, so ``paperback`` is right for ``["paperback", "digital"]``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import Enum

from evaluators.inputs import CatalogRecordLike, ClaimLike


class Verdict(Enum):
    CORRECT = "correct"
    WRONG = "wrong"
    UNKNOWN_ENTITY = "unknown_entity"
    UNCHECKABLE = "uncheckable"
    """The entity is known but the catalog does not have the attribute."""


def value_set(value: str | list[str]) -> frozenset[str]:
    return frozenset(value) if isinstance(value, list) else frozenset((value,))


def claim_key(claim: ClaimLike) -> tuple[str, str, frozenset[str]]:
    """Identity of a claim for comparing the student's errors with the teacher's."""
    return (claim.entity_id, claim.attribute, value_set(claim.value))


class Catalog:
    """A compacted catalog: the last record per entity wins, ``deleted`` removes it."""

    def __init__(self, records: Iterable[CatalogRecordLike] = ()) -> None:
        self._facts: dict[str, dict[str, frozenset[str]]] = {}
        self._introduced: dict[str, datetime] = {}
        for record in records:
            self.apply(record)

    def apply(self, record: CatalogRecordLike) -> None:
        if record.deleted:
            self._facts.pop(record.entity_id, None)
            self._introduced.pop(record.entity_id, None)
            return
        self._facts[record.entity_id] = {k: value_set(v) for k, v in record.attributes.items()}
        self._introduced[record.entity_id] = record.introduced_at

    def __contains__(self, entity_id: object) -> bool:
        return entity_id in self._facts

    def __len__(self) -> int:
        return len(self._facts)

    def introduced_at(self, entity_id: str) -> datetime | None:
        return self._introduced.get(entity_id)

    def check(self, claim: ClaimLike) -> Verdict:
        facts = self._facts.get(claim.entity_id)
        if facts is None:
            return Verdict.UNKNOWN_ENTITY
        truth = facts.get(claim.attribute)
        if truth is None:
            return Verdict.UNCHECKABLE
        value = claim.value
        if isinstance(value, str):  # {value} <= truth, without building the set
            return Verdict.CORRECT if value in truth else Verdict.WRONG
        return Verdict.CORRECT if value_set(value) <= truth else Verdict.WRONG
