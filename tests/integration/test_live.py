"""Live operation: a room that falls silent still finalizes its intervals by the wall clock."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from tests.integration.harness import Process, produce_lines, read_topic, topic_env, wait_until

pytestmark = pytest.mark.integration


def _at(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_silent_live_room_finalizes_within_a_minute_of_end_plus_grace(
    bootstrap: str, tmp_path: Path
) -> None:
    now = time.time()
    end = now - now % 900  # the quarter hour that ended last
    start = end - 900
    # the interval becomes final 25 s from now: the worker, ready in about 8 s, takes the events
    # before that and then closes the interval by the wall clock alone
    grace = (now - end) + 25
    env = topic_env(bootstrap, tmp_path)
    env["PACESETTER_GRACE_SECONDS"] = f"{grace:.3f}"
    env["PACESETTER_LIVE_LAG_SECONDS"] = "1500"
    worker = Process(["worker"], env, tmp_path / "worker.log")
    try:
        wait_until(lambda: worker.readyz()[0] == 200, 60, 0.2, what="the worker to be ready")
        events = [
            {"v": 1, "id": "a", "type": "call.offered", "room": "quiet", "at": _at(end - 90),
             "call": "c1", "line": "999"},
            {"v": 1, "id": "b", "type": "call.answered", "room": "quiet", "at": _at(end - 84),
             "call": "c1"},
        ]
        produce_lines(bootstrap, env["PACESETTER_TOPIC_EVENTS"], [orjson.dumps(e) for e in events])
        key = f"quiet|999|{_at(start).replace('.000000Z', 'Z')}"
        found: dict[str, float] = {}

        def final_seen() -> bool:
            for k, value, _p, _o in read_topic(bootstrap, env["PACESETTER_TOPIC_INTERVALS"],
                                              idle_seconds=0.3):
                record = orjson.loads(value)["record"]
                if k.decode() == key and record["final"]:
                    found["at"] = time.time()
                    found["answered"] = record["answered"]
                    return True
            return False

        wait_until(final_seen, grace + 120, interval=2, what=f"a final record for {key}")
        assert found["answered"] == 1
        due = end + grace
        assert found["at"] >= due - 1, "finalized before end + grace"
        assert found["at"] <= due + 60, f"finalized {found['at'] - due:.0f} s after end + grace"
        live = [orjson.loads(v) for _k, v, _p, _o in
                read_topic(bootstrap, env["PACESETTER_TOPIC_LIVE"], idle_seconds=0.3)]
        assert live and live[-1]["mode"] == "live"
    finally:
        worker.stop()
