"""The real public exports the shipped mappings are tested on (../shared/data, README there)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.test_layout import ROOT

DATA = Path(os.environ.get("PACESETTER_TEST_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def sf_sample() -> Path:
    """San Francisco Fire Department calls for service, 1-3 January 2017, one row per unit."""
    path = DATA / "sf-fire-calls-sample.csv"
    if not path.is_file():  # a real part missing is a failure, never a skip
        pytest.fail(f"{path} is missing: the shipped mappings are tested on it "
                    "(set PACESETTER_TEST_DATA to the folder holding it)")
    return path
