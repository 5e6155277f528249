"""``import events --watch --bootstrap`` feeding the real worker on the embedded broker: three
overlapping exports dropped one after another give the records of their union imported once."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from pacesetter.cli import main
from services.contract.settings import Settings
from services.figures.report import compute_records
from tests.integration.harness import Process, latest_records, read_topic, topic_env, wait_until
from tests.services.imports.conftest import DATA, overlapping_exports

pytestmark = pytest.mark.integration

CUTS = ("01/01/2017 04:00:00 PM", "01/02/2017 09:00:00 AM")


def test_watched_exports_feed_the_worker_the_union_once(
        bootstrap: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sample = DATA / "sf-fire-calls-sample.csv"
    assert sample.is_file(), f"{sample} is missing (set PACESETTER_TEST_DATA)"
    staging, drop = tmp_path / "staging", tmp_path / "drop"
    staging.mkdir()
    drop.mkdir()
    exports = overlapping_exports(sample, staging, CUTS)
    union = tmp_path / "union.jsonl"
    assert main(["import", "events", "--mapping", "sf-fire-units", *map(str, exports),
                 "--out", str(union)]) == 0
    # what each export gives imported alone: the watch publishes these, one after another
    alone_counts = []
    for export in exports:
        alone = tmp_path / f"{export.stem}.jsonl"
        assert main(["import", "events", "--mapping", "sf-fire-units", str(export),
                     "--out", str(alone)]) == 0
        alone_counts.append(len(alone.read_bytes().splitlines()))
    capsys.readouterr()
    assert all(alone_counts)
    want = compute_records(union.read_bytes().splitlines(), Settings())

    env = topic_env(bootstrap, tmp_path, partitions=2)
    worker = Process(["worker"], env, tmp_path / "worker.log")
    watcher = Process(["import", "events", "--mapping", "sf-fire-units", "--watch", str(drop),
                       "--poll", "0.3", "--bootstrap", bootstrap], env, tmp_path / "watch.log")
    try:
        def published() -> int:
            return sum(len(orjson.loads(value)) for _k, value, _p, _o in
                       read_topic(bootstrap, env["PACESETTER_TOPIC_EVENTS"], idle_seconds=0.3))

        for count, export in enumerate(exports, start=1):
            export.rename(drop / export.name)
            wait_until(lambda n=count: published() >= sum(alone_counts[:n]), 60, 0.5,
                       f"export {count} published\n{watcher.text()[-2000:]}")
        # each export's events published once, no more (a row refused would be refused alone
        # too: the union's records, below, show none is missing)
        assert published() == sum(alone_counts)

        def caught_up() -> bool:
            got = latest_records(bootstrap, env["PACESETTER_TOPIC_INTERVALS"])["attendance"]
            return got == want.attendance

        wait_until(caught_up, 120, 2.0, "the worker's attendance records to equal the union's\n"
                   + worker.text()[-2000:])
    finally:
        watcher.stop()
        worker.stop()
    # published in batches of one room, keyed by it
    messages = read_topic(bootstrap, env["PACESETTER_TOPIC_EVENTS"])
    assert messages and all(key == b"sf-fire" for key, *_ in messages)
    sizes = [len(orjson.loads(value)) for _key, value, _p, _o in messages]
    assert max(sizes) == 200 and sum(sizes) == sum(alone_counts)
    assert sum(sizes) > len(union.read_bytes().splitlines())
