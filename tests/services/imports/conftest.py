"""The real public exports the shipped mappings are tested on (tests/data, README there)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.test_layout import ROOT

# committed with the tests, so a clean checkout has it; PACESETTER_TEST_DATA points elsewhere
DATA = Path(os.environ.get("PACESETTER_TEST_DATA", ROOT / "tests" / "data"))


@pytest.fixture(scope="session")
def sf_sample() -> Path:
    """San Francisco Fire Department calls for service, 1-3 January 2017, one row per unit."""
    path = DATA / "sf-fire-calls-sample.csv"
    if not path.is_file():  # a real part missing is a failure, never a skip
        pytest.fail(f"{path} is missing: the shipped mappings are tested on it "
                    "(set PACESETTER_TEST_DATA to the folder holding it)")
    return path


SF_FORMAT = "%m/%d/%Y %I:%M:%S %p"
SF_STAGES = ("Received DtTm", "Dispatch DtTm", "On Scene DtTm", "Available DtTm")


def overlapping_exports(sample: Path, folder: Path, cuts: tuple[str, ...]) -> list[Path]:
    """The exports a CAD writing "incidents changed since the last export" would have made.

    Export k holds, as seen at ``cuts[k]`` (local times), every unit row of the incidents
    with a stage in ``(cuts[k-1], cuts[k]]``, with the stages still to come left empty; the
    last export is taken at the end of the sample. Incidents appear in several exports as
    their stages are added: together they hold every stage of the sample once at least.
    """
    import csv
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    local = ZoneInfo("America/Los_Angeles")

    with open(sample, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = list(reader.fieldnames or [])
        rows = list(reader)

    def when(text: str) -> datetime | None:
        return datetime.strptime(text, SF_FORMAT).replace(tzinfo=local) if text else None

    by_incident: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_incident.setdefault(row["Incident Number"], []).append(row)
    bounds = ([datetime.min.replace(tzinfo=UTC)] + [when(c) for c in cuts]
              + [datetime.max.replace(tzinfo=UTC)])
    paths = []
    for k in range(1, len(bounds)):
        low, high = bounds[k - 1], bounds[k]
        path = folder / f"export-{k}.csv"
        with open(path, "w", newline="", encoding="utf-8") as out:
            writer = csv.DictWriter(out, fieldnames=header)
            writer.writeheader()
            for members in by_incident.values():
                times = [when(r[c]) for r in members for c in SF_STAGES]
                if not any(t is not None and low < t <= high for t in times):
                    continue
                for row in members:
                    received = when(row["Received DtTm"])
                    if received is None or received > high:
                        continue
                    seen = dict(row)
                    for column in SF_STAGES[1:]:
                        at = when(row[column])
                        if at is not None and at > high:
                            seen[column] = ""
                    writer.writerow(seen)
        paths.append(path)
    return paths
