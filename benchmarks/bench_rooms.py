"""The /rooms page with 43 rooms live, and the event stream's memory per connected dashboard.

Starts an embedded broker and `pacesetter api` (a child process) on topics of their own, publishes
a day of 999 and 101 intervals and a live state for each of 43 rooms, then keeps publishing every
room's live state once a second, as workers do. Measures, on 127.0.0.1 only:

- first render: headless Chromium loads /rooms; ``performance.now()`` when the page's first
  table of 43 rooms is in the DOM (from navigation start), median of several loads, with the
  navigation timing's DOMContentLoaded and load events;
- update latency: a live state of one room with a new ``calls waiting`` figure is produced to
  Kafka; the time until that figure is in the page's table (a MutationObserver stamps it), through
  the API's read model, the event stream and the page's render, while all 43 rooms update;
  and the page's own render time per update (performance timing);
- memory per dashboard: the API process's resident memory before and after N server-sent-event
  clients connect and follow the stream for a while, divided by N.

Prints one JSON object. Run: `.venv/bin/python benchmarks/bench_rooms.py [--quick]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.kafka.broker import EmbeddedBroker, free_port  # noqa: E402
from tests.api.feeds import Feed, interval_record, live_state, make_settings, make_topics  # noqa: E402
from tests.browser.cdp import Browser, find_chromium  # noqa: E402
from tests.integration.harness import Process  # noqa: E402

HOST = "127.0.0.1"
ROOMS = [f"room-{i:02d}" for i in range(43)]
PROBE_ROOM = ROOMS[0]
SEEN_JS = """
window.__seen = {};
new MutationObserver(() => {
  const cell = document.querySelector('tr[data-room="PROBE"] [data-figure=waiting]');
  if (cell && !(cell.textContent in window.__seen)) window.__seen[cell.textContent] = Date.now();
}).observe(document.getElementById('overview-body'), {childList: true, subtree: true});
""".replace("PROBE", PROBE_ROOM)


def percentile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile by the nearest-rank method; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def summary(values: list[float]) -> dict[str, Any]:
    return {"n": len(values), "p50_ms": _r(percentile(values, 0.5)),
            "p95_ms": _r(percentile(values, 0.95)), "max_ms": _r(max(values, default=None))}


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def state(room: str, now: datetime, waiting: int) -> dict[str, Any]:
    found = live_state(room, now, in_queue=waiting, longest=4.0 * waiting)
    for name, line in found["lines"].items():
        line["staffing"] = None
        if name != "999":
            line["in_queue"] = 0  # the page's "calls waiting" is then exactly ``waiting``
    return found


def seed(feed: Feed, now: datetime) -> None:
    first = now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0)
    for room in ROOMS:
        for i in range(96):
            start = first - timedelta(minutes=15 * i)
            feed.interval(interval_record(room, "999", start, offered=20 + i % 9, final=i > 0))
            feed.interval(interval_record(room, "101", start, offered=30 + i % 7, final=i > 0))
        feed.live(state(room, now, 1))
    feed.flush()


class Publisher:
    """Every room's live state once a second (the probe room only when probed)."""

    def __init__(self, feed: Feed) -> None:
        self.feed = feed
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        tick = 0
        while not self.stop.wait(1.0):
            tick += 1
            now = datetime.now(UTC)
            with self.lock:
                for i, room in enumerate(ROOMS[1:], start=1):
                    self.feed.live(state(room, now, (i + tick) % 6))
                self.feed.flush()

    def probe(self, waiting: int) -> float:
        """Publish the probe room with ``waiting`` calls; the wall-clock ms of the send."""
        with self.lock:
            sent = time.time() * 1000
            self.feed.live(state(PROBE_ROOM, datetime.now(UTC), waiting))
            self.feed.flush()
        return sent


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def follow(url: str, clients: int, seconds: float, counted: list[int]) -> None:
    import httpx

    async def one(client: httpx.AsyncClient) -> None:
        with contextlib.suppress(httpx.HTTPError, asyncio.CancelledError):
            async with client.stream("GET", url) as response:
                async for line in response.aiter_lines():
                    if line.startswith("event:"):
                        counted[0] += 1

    limits = httpx.Limits(max_connections=clients + 5, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=None, limits=limits) as client:
        tasks = [asyncio.create_task(one(client)) for _ in range(clients)]
        await asyncio.sleep(seconds)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def measure_memory(base: str, pid: int, clients: int, seconds: float) -> dict[str, Any]:
    before = rss_kb(pid)
    counted = [0]
    result: dict[str, Any] = {}

    def run() -> None:
        asyncio.run(follow(base + "/api/v1/stream", clients, seconds, counted))

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(seconds * 0.8)
    during = rss_kb(pid)
    thread.join()
    result.update(connections=clients, seconds=seconds, rss_before_mb=round(before / 1024, 1),
                  rss_with_clients_mb=round(during / 1024, 1),
                  per_connection_kb=round((during - before) / clients, 1),
                  events_received=counted[0])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer loads, probes and clients")
    args = parser.parse_args()
    loads, probes, clients = (3, 10, 50) if args.quick else (5, 30, 200)
    chromium = find_chromium()
    if chromium is None:
        raise SystemExit("Chromium is not installed (apt-get install chromium)")

    with tempfile.TemporaryDirectory(prefix="bench-rooms-") as tmp_text, \
            EmbeddedBroker(HOST, free_port()) as broker:
        tmp = Path(tmp_text)
        settings = make_settings(broker.bootstrap, partitions=4)
        make_topics(settings)
        feed = Feed(settings)
        seed(feed, datetime.now(UTC))
        port = free_port()
        env = {"PACESETTER_BOOTSTRAP_SERVERS": broker.bootstrap,
               "PACESETTER_TOPIC_INTERVALS": settings.topic_intervals,
               "PACESETTER_TOPIC_LIVE": settings.topic_live,
               "PACESETTER_TOPIC_ALERTS": settings.topic_alerts,
               "PACESETTER_TOPIC_EVENTS": settings.topic_events,
               "PACESETTER_PARTITIONS": "4", "PACESETTER_API_TOKENS": "",
               "PACESETTER_STORE_URL": f"sqlite:///{tmp / 'history.db'}",
               "PACESETTER_DATA_DIR": str(tmp / "data")}
        api = Process(["api", "--api-host", HOST, "--api-port", str(port)], env, tmp / "api.log")
        base = f"http://{HOST}:{port}"
        publisher = Publisher(feed)
        browser = None
        try:
            import httpx

            deadline = time.monotonic() + 120
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                        break
                if api.proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("API did not become ready:\n" + api.text()[-3000:])
                time.sleep(0.2)
            publisher.thread.start()
            browser = Browser(chromium, tmp / "profile", log=open(tmp / "chromium.log", "wb"))  # noqa: SIM115
            browser.open_page()

            first, dom, load = [], [], []
            for _ in range(loads):
                browser.navigate(base + "/rooms")
                browser.wait_for("window.pacesetterRooms && pacesetterRooms.firstRenderMs "
                                 "!== null && pacesetterRooms.renders[0].rooms === 43", 60)
                first.append(browser.evaluate("pacesetterRooms.firstRenderMs"))
                nav = browser.evaluate("(() => { const n = performance.getEntriesByType("
                                       "'navigation')[0]; return [n.domContentLoadedEventEnd, "
                                       "n.loadEventEnd]; })()")
                dom.append(nav[0])
                load.append(nav[1])

            browser.wait_for("document.getElementById('connection').textContent"
                             ".includes('LIVE')", 30)
            browser.evaluate(SEEN_JS)
            latencies = []
            for k in range(probes):
                waiting = 100 + k
                sent = publisher.probe(waiting)
                seen = browser.wait_for(f"window.__seen['{waiting}']", 30)
                latencies.append(float(seen) - sent)
                time.sleep(0.7)
            renders = browser.evaluate("pacesetterRooms.renders.map(r => r.took)")
            rooms_page = {
                "rooms": len(ROOMS), "screen": "1920x1080",
                "first_render_ms": {"median": _r(statistics.median(first)), "runs": len(first),
                                    "all": [_r(x) for x in first]},
                "dom_content_loaded_ms": _r(statistics.median(dom)),
                "load_event_ms": _r(statistics.median(load)),
                "update_latency": {**summary(latencies), "what": "live state produced to "
                                   "Kafka until its figure is in the /rooms table"},
                "render": {**summary(renders), "what": "one render of the 43-room table"},
            }
            browser.close()
            browser = None
            memory = measure_memory(base, api.proc.pid, clients, 20.0 if args.quick else 30.0)
        finally:
            publisher.stop.set()
            if browser is not None:
                browser.close()
            api.stop(timeout=10)
            feed.close()
    print(json.dumps({"rooms_page": rooms_page, "sse_memory": memory}, indent=2))


if __name__ == "__main__":
    main()
