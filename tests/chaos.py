"""Turn a clean event file into a hostile one: duplicates, reordering, invalid lines."""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any

import orjson


def _at(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["at"].replace("Z", "+00:00")).timestamp()


def hostile(events: list[dict[str, Any]], seed: int, duplicates: float = 0.03,
            displace_seconds: float = 1800, displaced: float = 0.05,
            invalid: float = 0.01) -> list[bytes]:
    """JSONL lines of ``events`` with ~``duplicates`` exact repeats, ~``displaced`` events moved
    by up to ``displace_seconds`` of event time, and ~``invalid`` broken lines mixed in."""
    rng = random.Random(seed)
    keyed = []
    for index, event in enumerate(events):
        when = _at(event)
        if rng.random() < displaced:
            when += rng.uniform(-displace_seconds, displace_seconds)
        keyed.append((when, index, orjson.dumps(event)))
        if rng.random() < duplicates:
            keyed.append((when + rng.uniform(0, 600), index, orjson.dumps(event)))
    keyed.sort(key=lambda item: (item[0], item[1]))
    lines = [raw for _when, _index, raw in keyed]
    broken = []
    for position in range(len(lines)):
        if rng.random() < invalid:
            broken.append((position, _broken_line(rng, events[rng.randrange(len(events))])))
    for position, line in reversed(broken):
        lines.insert(position, line)
    return lines


def _broken_line(rng: random.Random, event: dict[str, Any]) -> bytes:
    bad = dict(event)
    bad["id"] = f"bad-{rng.randrange(10**9)}"
    kind = rng.randrange(7)
    if kind == 0:
        return b'{"v":1,"id":"x",'  # truncated JSON
    if kind == 1:
        bad["at"] = bad["at"].rstrip("Z")  # naive time
    elif kind == 2:
        bad["type"] = "call.teleported"
    elif kind == 3:
        bad["v"] = 2
    elif kind == 4:
        bad["room"] = "North Room"
    elif kind == 5:
        bad["at"] = "2099-01-01T00:00:00Z"  # far in the future
    else:
        bad.pop("room", None)
    return orjson.dumps(bad)
