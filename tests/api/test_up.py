"""``pacesetter up`` end to end: a simulated day replayed through it, read back over the API,
equals the independent batch computation (tests/oracle.py) record for record."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from services.kafka.broker import free_port
from services.simulation.simulator import simulate_events
from tests import oracle
from tests.streams.test_engine_vs_oracle import assert_same

pytestmark = pytest.mark.integration
ROUTES = (("intervals", "intervals", ("room", "line")),
          ("attendance", "attendance", ("room", "grade")),
          ("handlers", "handlers", ("room",)))


def _get(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def _key(record: dict, fields: tuple[str, ...]) -> str:
    parts = [record[f] if f != "grade" else f"grade:{record[f]}" for f in fields]
    if fields == ("room",):
        parts.append("handlers")
    return "|".join([*parts, record["interval_start"]])


def _difference(base: str, rooms: list[str], want: oracle.OracleResult) -> str | None:
    for route, attr, fields in ROUTES:
        got = {}
        for room in rooms:
            try:
                records = _get(f"{base}api/v1/rooms/{room}/{route}")
            except urllib.error.HTTPError as exc:
                return f"{room}: HTTP {exc.code}"  # not published yet
            for record in records:
                got[_key(record, fields)] = record
        expected = getattr(want, attr)
        if set(got) != set(expected):
            return f"{route}: {len(set(got) ^ set(expected))} keys differ"
        for key, record in expected.items():
            try:
                assert_same(got[key], record, f"{route}[{key}]")
            except AssertionError as exc:
                return str(exc)
    return None


def test_a_day_replayed_through_up_reads_back_equal_to_the_oracle(tmp_path: Path):
    lines = [orjson.dumps(e) for e in simulate_events(rooms=2, days=1.0, seed=21)]
    day = tmp_path / "day.jsonl"
    day.write_bytes(b"\n".join(lines) + b"\n")
    port = free_port()
    env = dict(os.environ, PACESETTER_API_TOKENS="",
               PACESETTER_STORE_URL=f"sqlite:///{tmp_path / 'store.db'}",
               PACESETTER_DATA_DIR=str(tmp_path / "data"))
    log = open(tmp_path / "up.log", "wb")  # noqa: SIM115 - closed below
    up = subprocess.Popen([sys.executable, "-m", "pacesetter.cli", "up", "--api-port", str(port)],
                          stdout=subprocess.PIPE, stderr=log, env=env, start_new_session=True)
    try:
        bootstrap = base = None
        assert up.stdout is not None
        for raw in up.stdout:
            text = raw.decode().strip()
            if text.startswith("bootstrap:"):
                bootstrap = text.split(":", 1)[1].strip()
            if text.startswith("dashboard:"):
                base = text.split(":", 1)[1].strip()
                break
        assert bootstrap and base, (tmp_path / "up.log").read_text()[-3000:]
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "pacesetter.cli", "replay", str(day),
                        "--bootstrap", bootstrap], env=env, check=True, capture_output=True,
                       timeout=120)
        want = oracle.compute(lines, wall_clock=datetime.now(UTC))
        rooms = sorted({json.loads(line)["room"] for line in lines})
        deadline = time.monotonic() + 180
        while (problem := _difference(base, rooms, want)) is not None:
            assert time.monotonic() < deadline, problem
            time.sleep(2)
        print(f"{len(lines)} events: API equal to the oracle "
              f"{time.monotonic() - started:.1f} s after the replay began")
        assert _get(base + "readyz")["ready"] is True
    finally:
        up.send_signal(signal.SIGINT)
        try:
            code = up.wait(40)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
            code = up.wait(10)
        log.close()
    assert code == 0, (tmp_path / "up.log").read_text()[-3000:]
