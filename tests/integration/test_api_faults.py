"""Faults the API survives: its own SIGKILL and restart, and a broker stopped and restarted."""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from services.kafka.broker import EmbeddedBroker, free_port
from services.simulation.simulator import simulate_events
from tests.integration.harness import Process, produce_lines, read_topic, topic_env, wait_until

pytestmark = pytest.mark.integration

HOST = "127.0.0.1"


def start_api(env: dict[str, str], port: int, log: Path) -> Process:
    return Process(["api", "--api-host", HOST, "--api-port", str(port)],
                   {**env, "PACESETTER_API_TOKENS": ""}, log)


def get(url: str, **params: Any) -> httpx.Response | None:
    """The response, or None while nothing listens."""
    try:
        return httpx.get(url, params=params or None, timeout=5)
    except httpx.TransportError:
        return None


def wait_worker_ready(worker: Process, partitions: int, timeout: float = 60) -> None:
    def rebuilt() -> bool:
        if worker.proc.poll() is not None:
            return True
        metrics = worker.metrics()
        return (worker.readyz()[0] == 200
                and metrics.get("pacesetter_worker_partitions_owned") == partitions)

    wait_until(rebuilt, timeout, 0.2, "the worker to own and rebuild its partitions")
    assert worker.proc.poll() is None, worker.text()[-3000:]


def settled_intervals(base: str, room: str, timeout: float) -> list[dict[str, Any]]:
    """The room's interval records once three reads a second apart agree."""
    seen: list[Any] = []

    def settled() -> bool:
        response = get(f"{base}/api/v1/rooms/{room}/intervals")
        rows = response.json() if response is not None and response.status_code == 200 else None
        seen.append(rows)
        return bool(rows) and len(seen) >= 3 and seen[-1] == seen[-2] == seen[-3]

    wait_until(settled, timeout, 1.0, f"the intervals of {room} to settle")
    return list(seen[-1])


def test_api_killed_and_restarted_is_not_ready_until_caught_up_then_serves_the_same_records(
    bootstrap: str, tmp_path: Path
) -> None:
    env = topic_env(bootstrap, tmp_path)
    port = free_port()
    base = f"http://{HOST}:{port}"
    worker = Process(["worker"], env, tmp_path / "worker.log")
    api = start_api(env, port, tmp_path / "api-1.log")
    second: Process | None = None
    try:
        morning = [orjson.dumps(e) for e in simulate_events(rooms=1, days=0.25, seed=83)]
        produce_lines(bootstrap, env["PACESETTER_TOPIC_EVENTS"], morning)
        before = settled_intervals(base, "north", 90)
        assert len({r["line"] for r in before}) >= 2

        api.kill(signal.SIGKILL)
        api.proc.wait(10)
        api.stop()
        second = start_api(env, port, tmp_path / "api-2.log")
        answers: list[tuple[int, dict[str, Any]]] = []

        def ready() -> bool:
            response = get(f"{base}/readyz")
            if response is not None:
                answers.append((response.status_code, response.json()))
            assert second is not None and second.proc.poll() is None, second.text()[-3000:]
            return response is not None and response.status_code == 200

        wait_until(ready, 60, 0.02, "the restarted API to be ready")
        first_status, first_body = answers[0]
        assert first_status == 503, f"the first answer was {answers[0]}: ready before reading?"
        assert first_body["ready"] is False and first_body["reason"], first_body
        assert all(body["reason"] for status, body in answers if status == 503)
        response = get(f"{base}/api/v1/rooms/north/intervals")
        assert response is not None and response.status_code == 200
        assert response.json() == before  # the read model was rebuilt from the topics, whole
    finally:
        for proc in (second, api, worker):
            if proc is not None:
                proc.stop()


def at_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def offered(eid: str, room: str, call: str, line: str) -> bytes:
    return orjson.dumps({"v": 1, "id": eid, "type": "call.offered", "room": room,
                         "at": at_now(), "call": call, "line": line})


def line_offered(base: str, room: str, line: str) -> int | None:
    """``lines[line].rolling_60m.offered`` of the room's live state, None if absent."""
    response = get(f"{base}/api/v1/rooms/{room}/live")
    if response is None or response.status_code != 200:
        return None
    figures = (response.json().get("lines") or {}).get(line)
    return None if figures is None else int(figures["rolling_60m"]["offered"])


@contextlib.contextmanager
def own_broker(port: int, log: Path) -> Iterator[list[EmbeddedBroker]]:
    """A broker of this test alone; the list holds whichever instance runs now."""
    holder = [EmbeddedBroker(HOST, port, log_path=str(log)).start()]
    try:
        yield holder
    finally:
        for broker in holder:
            broker.stop()


def live_topic_offered(bootstrap: str, topic: str, room: str, line: str) -> int | None:
    """What the worker itself published last for the room (its live topic), bypassing the API."""
    try:
        messages = read_topic(bootstrap, topic, idle_seconds=0.5, timeout=10)
    except Exception:  # no topic yet: aiokafka asserts there are partitions
        return None
    latest = None
    for key, value, _p, _o in sorted(messages, key=lambda m: (m[2], m[3])):
        if key == room.encode():
            latest = orjson.loads(value)
    figures = None if latest is None else (latest.get("lines") or {}).get(line)
    return None if figures is None else int(figures["rolling_60m"]["offered"])


def test_worker_and_api_recover_by_themselves_when_the_broker_restarts(tmp_path: Path) -> None:
    port = free_port()
    problems: list[str] = []
    with own_broker(port, tmp_path / "broker.log") as brokers:
        bootstrap = brokers[0].bootstrap
        env = topic_env(bootstrap, tmp_path)
        api_port = free_port()
        base = f"http://{HOST}:{api_port}"
        worker = Process(["worker"], env, tmp_path / "worker.log")
        api = start_api(env, api_port, tmp_path / "api.log")
        try:
            wait_worker_ready(worker, int(env["PACESETTER_PARTITIONS"]))
            before = [offered(f"a-{i}", "alpha", f"c-{i}", "999") for i in range(20)]
            produce_lines(bootstrap, env["PACESETTER_TOPIC_EVENTS"], before, batch=1)
            wait_until(lambda: line_offered(base, "alpha", "999") == 20, 60, 0.5,
                       "the first calls in /live")
            worker_mark, api_mark = len(worker.text()), len(api.text())
            assert worker.metrics()["pacesetter_worker_broker_connected"] == 1

            brokers[0].stop()
            stopped = time.monotonic()
            outage: dict[str, Any] = {}
            worker_outage: dict[str, Any] = {}
            while time.monotonic() - stopped < 30:
                if not worker_outage:
                    status, why = worker.readyz()
                    if (status == 503 and worker.metrics().get(
                            "pacesetter_worker_broker_connected") == 0):
                        worker_outage = {"after_seconds": round(time.monotonic() - stopped, 1),
                                         "readyz": why}
                health = get(f"{base}/healthz")
                assert health is not None and health.status_code == 200, "/healthz failed"
                response = get(f"{base}/readyz")
                assert response is not None, "the API stopped answering"
                if response.status_code == 503 and not outage:
                    outage = {"after_seconds": round(time.monotonic() - stopped, 1),
                              **response.json()}
                if outage and worker_outage:
                    break
                time.sleep(0.5)
            print(f"broker stopped: worker {worker_outage}")
            if not worker_outage:
                problems.append("the worker's /readyz and pacesetter_worker_broker_connected "
                                "did not show the broker gone within 30 s")
            elif "disconnected" not in worker_outage["readyz"]:
                problems.append(f"the worker's /readyz does not say why: {worker_outage}")
            print(f"broker stopped: /readyz {outage or response.json()}")
            if not outage:
                problems.append(f"/readyz stayed 200 for 30 s with the broker gone: "
                                f"{response.json()}")
            elif not ("broker" in outage["reason"].lower() or bootstrap in outage["reason"]):
                problems.append(f"the 503 reason does not name the broker: {outage['reason']}")
            time.sleep(3)  # a few seconds of outage: both must live through it
            assert worker.proc.poll() is None, worker.text()[-3000:]
            assert api.proc.poll() is None, api.text()[-3000:]

            brokers.append(EmbeddedBroker(HOST, port, log_path=str(tmp_path / "broker.log")))
            brokers[-1].start()
            restarted = time.monotonic()
            # tansu keeps data in memory only: the restarted broker is empty, like a cluster
            # whose topics were deleted and created again. One new call of the same room, on
            # a line of its own, must show.
            produce_lines(bootstrap, env["PACESETTER_TOPIC_EVENTS"],
                          [offered("b-0", "alpha", "c-new", "101")], batch=1)
            recovered: dict[str, float] = {}
            live_topic = env["PACESETTER_TOPIC_LIVE"]
            deadline = restarted + 120
            while time.monotonic() < deadline and len(recovered) < 4:
                assert worker.proc.poll() is None, worker.text()[-3000:]
                assert api.proc.poll() is None, api.text()[-3000:]
                response = get(f"{base}/readyz")
                # (a 200 counts only if the outage was seen: a read model that never noticed
                # the broker go has nothing to recover from)
                if "api_ready" not in recovered and outage and response is not None and (
                        response.status_code == 200):
                    recovered["api_ready"] = round(time.monotonic() - restarted, 1)
                if "worker_published" not in recovered and live_topic_offered(
                        bootstrap, live_topic, "alpha", "101") == 1:
                    recovered["worker_published"] = round(time.monotonic() - restarted, 1)
                if "api_live" not in recovered and line_offered(base, "alpha", "101") == 1:
                    recovered["api_live"] = round(time.monotonic() - restarted, 1)
                if "worker_ready" not in recovered and worker.readyz()[0] == 200 and (
                        worker.metrics().get("pacesetter_worker_broker_connected") == 1):
                    recovered["worker_ready"] = round(time.monotonic() - restarted, 1)
                time.sleep(1)
            print(f"seconds from the broker restart to recovery: {recovered}")
            if "worker_published" not in recovered:
                problems.append("the worker did not publish the new call within 120 s of the "
                                "broker restart")
            if "api_ready" not in recovered and outage:
                problems.append(f"/readyz not 200 within 120 s of the broker restart: "
                                f"{response.json() if response is not None else None}")
            if "api_live" not in recovered:
                problems.append("/live did not show the new call within 120 s of the broker "
                                "restart")
            if "worker_ready" not in recovered:
                problems.append("the worker's /readyz was not 200 with the broker connected "
                                f"within 120 s of the broker restart: {worker.readyz()}")
            if problems:
                print("--- worker log after the stop ---\n"
                      + excerpt(worker.text()[worker_mark:]))
                print("--- api log after the stop ---\n" + excerpt(api.text()[api_mark:]))
            assert not problems, "\n".join(problems)
        finally:
            api.stop()
            worker.stop()


def excerpt(log: str, limit: int = 40) -> str:
    """The log's distinct lines (timestamps dropped), at most ``limit`` of them."""
    seen: dict[str, None] = {}
    for line in log.splitlines():
        text = line.split("] ", 3)[-1] if line.startswith("[") else line
        seen.setdefault(text.strip()[:240], None)
    return "\n".join(list(seen)[:limit])
