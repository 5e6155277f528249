"""Mapping files are validated whole when loaded, with the key and line of every problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.imports.mapping import MappingError, load_mapping, parse_mapping, shipped_dir

GOOD = """\
version = 1

[source]
format = "csv"
timezone = "Europe/London"
null_values = ["", "NULL", "-9999"]
room = "north"

[where]
"Agency" = "POLICE"
"Call_Reception" = { not_in = ["OFFICER"] }

[incidents]
id = "Master_Incident_Number"
created = "Incident_Start_Time"
dispatched = { columns = ["d", "t"], format = "%d/%m/%Y %H:%M:%S" }
arrived = { coalesce = ["Arrival", { column = "Arrival2", format = "%H:%M %d/%m/%Y" }] }
closed = "Final_Closed_Time"
grade = { column = "Priority_Number", map = { "1" = "immediate", "2" = "priority" }, \
  default = "resolution" }
area = { value = "urban" }
"""


def problems(text: str) -> list[str]:
    with pytest.raises(MappingError) as caught:
        parse_mapping(text, "force.toml")
    return str(caught.value).splitlines()


def test_the_contracts_example_loads_with_every_kind_of_field() -> None:
    mapping = parse_mapping(GOOD)
    assert mapping.kind == "incidents"
    assert mapping.rows.fields()["grade"].map == {"1": "immediate", "2": "priority"}
    assert mapping.columns()[:2] == ["Agency", "Call_Reception"]
    assert "Arrival2" in mapping.columns() and "t" in mapping.columns()


def test_an_unknown_key_is_named_with_its_line() -> None:
    text = GOOD.replace('map = {', 'mapp = {')
    assert problems(text) == [
        "force.toml line 19: incidents.grade.mapp: unknown key (check its spelling against "
        "MAPPING.md)"]


def test_an_unknown_key_in_source_and_an_unknown_table_are_named() -> None:
    text = GOOD.replace('room = "north"', 'rooom = "north"') + '\n[callz]\nid = "x"\n'
    found = problems(text)
    assert any(p.startswith("force.toml line 7: source.rooom: unknown key") for p in found)
    assert any(p.startswith("force.toml line 22: callz: unknown key") for p in found)


def test_a_missing_required_field_names_the_field_and_the_table_line() -> None:
    text = GOOD.replace('grade = { column', 'colour = { column')
    found = problems(text)
    assert "force.toml line 13: incidents.grade: is required but missing" in found


def test_a_bad_time_format_is_refused_before_any_row_is_read() -> None:
    text = GOOD.replace('"%d/%m/%Y %H:%M:%S"', '"%d/%m/%Y %H:%Q"')
    (problem,) = problems(text)
    assert problem.startswith("force.toml line 16: incidents.dispatched.format: %Q")


def test_a_format_on_a_field_that_is_not_a_time_is_refused() -> None:
    text = GOOD.replace('default = "resolution" }', 'default = "resolution", format = "%Y" }')
    (problem,) = problems(text)
    assert "grade: format applies to times only" in problem


@pytest.mark.parametrize(("change", "expected"), [
    (('timezone = "Europe/London"', 'timezone = "Europe/Londres"'), "source.timezone"),
    (('room = "north"', 'room = "North Room"'), "source.room"),
    (('area = { value = "urban" }', 'area = { value = "urban", column = "A" }'),
     "incidents.area: give exactly one of column, columns, coalesce or value"),
    (('{ not_in = ["OFFICER"] }', '{ not_in = ["OFFICER"], in = ["X"] }'), "where.Call_Reception"),
    (("version = 1", "version = 2"), "line 1: version"),
])
def test_other_mistakes_name_their_key(change: tuple[str, str], expected: str) -> None:
    found = problems(GOOD.replace(*change))
    assert any(expected in p for p in found), found


def test_two_kinds_of_row_or_none_are_refused() -> None:
    assert any("exactly one kind of row" in p
               for p in problems(GOOD + '\n[calls]\nid = "a"\nline = "b"\noffered = "c"\n'))
    assert any("exactly one kind of row" in p for p in problems(GOOD.split("[incidents]")[0]))


def test_malformed_toml_is_refused_with_its_line() -> None:
    (problem,) = problems(GOOD.replace('room = "north"', 'room = north'))
    assert problem.startswith("force.toml: not valid TOML") and "line 7" in problem


def test_the_shipped_mappings_load_and_are_found_by_name(tmp_path: Path) -> None:
    folder = shipped_dir()
    assert folder is not None
    assert load_mapping("sf-fire-units").kind == "units"
    assert load_mapping("calls-per-row").kind == "calls"
    assert load_mapping(folder / "calls-per-row.toml").pseudonymised()
    with pytest.raises(MappingError, match="cannot read the mapping"):
        load_mapping(tmp_path / "absent.toml")
