"""The pure parts of the saved forensic queries: times, slices, rendering with bound values."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from evaluators.config import EvalConfig
from schemas.errors import ConfigError
from streams import forensics
from streams.sql import check_read_only

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("text, back", [
    ("6h", timedelta(hours=6)), ("30m", timedelta(minutes=30)), ("2d", timedelta(days=2)),
    ("90s", timedelta(seconds=90)), ("1w", timedelta(days=7)), (" 1.5h ", timedelta(minutes=90)),
])
def test_durations_count_back_from_now(text: str, back: timedelta) -> None:
    assert forensics.parse_time(text, NOW) == NOW - back


def test_rfc3339_times_with_and_without_zone() -> None:
    assert forensics.parse_time("2026-11-01T10:00:00Z", NOW) == datetime(2026, 11, 1, 10, tzinfo=UTC)
    assert forensics.parse_time("2026-11-01T12:00:00+02:00", NOW) == datetime(2026, 11, 1, 10, tzinfo=UTC)
    assert forensics.parse_time("2026-11-01 10:00", NOW) == datetime(2026, 11, 1, 10, tzinfo=UTC)


@pytest.mark.parametrize("text", ["6", "h", "yesterday", "-6h", "6 hours", ""])
def test_bad_times_name_the_accepted_forms(text: str) -> None:
    with pytest.raises(ConfigError, match="duration like 6h"):
        forensics.parse_time(text, NOW)


def test_slices_parse_to_pairs_and_all_means_no_filter() -> None:
    assert forensics.parse_slice("region=br") == [("region", "br")]
    assert forensics.parse_slice("region=eu, device=android-lowmem") == [("region", "eu"), ("device", "android-lowmem")]
    assert forensics.parse_slice("all") == []
    for bad in ("region", "=br", "region=", "region=br,", "a=b,c"):
        with pytest.raises(ConfigError, match="KEY=VALUE"):
            forensics.parse_slice(bad)


def _scope(**kw: object) -> forensics.Scope:
    base: dict[str, object] = {"since": NOW - timedelta(hours=6), "until": NOW}
    base.update(kw)
    return forensics.Scope(**base)  # type: ignore[arg-type]


def test_an_empty_period_is_refused() -> None:
    with pytest.raises(ConfigError, match="empty period"):
        _scope(since=NOW, until=NOW)


def test_parameters_follow_the_evaluation_settings() -> None:
    params = _scope().parameters()
    # Hand-computed from DESIGN §5 defaults: 0.9 × $0.20 + 0.1 × $3.00 = $0.48 per 1,000.
    assert params["planned_cost_per_1k"] == pytest.approx(0.48)
    assert params["since"] == "2026-11-20 06:00:00.000" and params["until"] == "2026-11-20 12:00:00.000"
    assert params["edges"] == [7.0, 30.0, 60.0, 180.0, 365.0]
    assert params["bins"] == 15 and params["confident_threshold"] == 0.8
    custom = _scope(config=EvalConfig(new_title_days=14, planned_fallback_rate=0.2, student_cost_per_1k=1.0,
                                      teacher_cost_per_1k=2.0)).parameters()
    assert custom["edges"] == [7.0, 14.0, 30.0, 180.0, 365.0]
    assert custom["planned_cost_per_1k"] == pytest.approx(0.8 * 1.0 + 0.2 * 2.0)


@pytest.mark.parametrize("name", list(forensics.SAVED))
def test_every_saved_query_is_one_read_with_every_parameter_bound(name: str) -> None:
    scope = _scope(slices=(("region", "br"), ("intent", "faq"), ("risk", "high"), ("freshness", "new"),
                           ("multi_intent", "true")))
    sql, params = forensics.render(forensics.get(name), scope)
    assert check_read_only(sql)
    assert "$" not in sql
    named = set(re.findall(r"\{([A-Za-z_]\w*):", sql))
    assert named == set(params)
    assert "distillwatch" not in sql  # the database is a bound identifier too


def test_slice_values_are_bound_never_pasted() -> None:
    nasty = "br' OR 1=1 --"
    sql, params = forensics.render(forensics.get("copied-errors"), _scope(slices=(("region", nasty),)))
    assert nasty not in sql and "OR 1=1" not in sql
    assert params["slice_value_0"] == nasty and params["slice_key_0"] == "region"
    sql, params = forensics.render(forensics.get("alert-timeline"), _scope(slices=((nasty, "x"),)))
    assert nasty not in sql and params["slice_parts"] == [f"{nasty}=x"]


def test_derived_slices_map_onto_their_columns() -> None:
    cond, params = forensics.slice_filter([("intent", "faq"), ("freshness", "new")], "request")
    assert "reference_intent = {slice_value_0:String}" in cond and "freshness = {slice_value_1:String}" in cond
    assert "slice[" not in cond and params == {"slice_value_0": "faq", "slice_value_1": "new"}
    cond, _ = forensics.slice_filter([("device", "ios")], "request")
    assert cond == "(slice[{slice_key_0:String}] = {slice_value_0:String})"
    assert forensics.slice_filter([], "request") == ("1", {})
    for bad in (("risk", "medium"), ("multi_intent", "yes")):
        with pytest.raises(ConfigError, match="expected"):
            forensics.slice_filter([bad], "request")


def test_unknown_names_list_the_known_ones_and_underscores_work() -> None:
    assert forensics.get("copied_errors") is forensics.get("copied-errors")
    with pytest.raises(ConfigError, match="known: copied-errors, confident-errors"):
        forensics.get("copied")
