"""Local times read by the compiled patterns equal strptime resolved by zoneinfo (fold=0)."""
# ruff: noqa: DTZ001, DTZ007 - naive local wall-clock times are what exports hold

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.contract.events import format_time, to_us
from services.imports.build import Refused, Times, at_text, fast_pattern

FORMATS = ("%m/%d/%Y %I:%M:%S %p", "%d/%m/%Y %H:%M:%S", "%Y-%m-%d %H:%M:%S.%f", "%d/%m/%y %H:%M")
# clock changes of 2026: London, Los Angeles, Lord Howe (30 minutes), St John's
CHANGES = (datetime(2026, 3, 29), datetime(2026, 10, 25), datetime(2026, 3, 8),
           datetime(2026, 11, 1), datetime(2026, 4, 5), datetime(2026, 10, 4))


@pytest.mark.parametrize("zone", ["Europe/London", "America/Los_Angeles",
                                  "Australia/Lord_Howe", "America/St_Johns", "Asia/Kolkata"])
def test_compiled_formats_read_as_strptime_and_zoneinfo_do(zone: str) -> None:
    times, rng, tz = Times(ZoneInfo(zone)), random.Random(zone), ZoneInfo(zone)
    for fmt in FORMATS:
        assert fast_pattern(fmt) is not None
        for _ in range(1500):
            if rng.random() < 0.5:  # around a clock change: skipped and repeated times
                base = rng.choice(CHANGES) + timedelta(seconds=rng.randrange(4 * 3600))
            else:
                base = datetime(2025, 1, 1) + timedelta(seconds=rng.randrange(3 * 365 * 86400))
            text = base.strftime(fmt)
            want = datetime.strptime(text, fmt).replace(tzinfo=tz).astimezone(UTC)
            assert times.us(text, fmt, "c", repr(text)) == to_us(want), (fmt, text)


def test_impossible_times_are_refused_as_bad_time() -> None:
    times = Times(ZoneInfo("Europe/London"))
    for text, fmt in (("31/02/2026 10:00:00", "%d/%m/%Y %H:%M:%S"),
                      ("01/01/2026 25:00:00", "%d/%m/%Y %H:%M:%S"),
                      ("13/01/2026 01:00:00 PM", "%m/%d/%Y %I:%M:%S %p"),
                      ("01/01/2026 13:00:00 PM", "%m/%d/%Y %I:%M:%S %p"),
                      ("2026-01-01", "%d/%m/%Y %H:%M:%S"), ("yesterday", None)):
        with pytest.raises(Refused) as refused:
            times.us(text, fmt, "col", repr(text))
        assert refused.value.reason == "bad_time" and refused.value.column == "col"


def test_formats_the_patterns_do_not_cover_fall_back_to_strptime() -> None:
    assert fast_pattern("%d %b %Y %H:%M") is None
    times = Times(ZoneInfo("Europe/London"))
    assert times.us("21 Nov 2026 22:15", "%d %b %Y %H:%M", "c", "") == to_us(
        datetime(2026, 11, 21, 22, 15, tzinfo=UTC))


def test_at_text_is_the_contracts_utc_text() -> None:
    for us in (0, 1_500_000, 1_798_761_599_999_999, 1_798_761_600_000_001, 1_798_761_600_250_000):
        assert at_text(us) == format_time(datetime(1970, 1, 1, tzinfo=UTC)
                                          + timedelta(microseconds=us))
