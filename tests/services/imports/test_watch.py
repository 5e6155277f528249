"""``import events --watch``: each new or changed export imported once; overlapping exports
give what importing their union once gives."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pacesetter.cli import main
from services.contract.settings import Settings
from services.figures.report import compute_records
from services.imports.watch import Watcher
from tests.services.imports.conftest import overlapping_exports
from tests.test_layout import ROOT

CUTS = ("01/01/2017 04:00:00 PM", "01/02/2017 09:00:00 AM")


def test_a_file_is_due_once_when_still_and_again_when_its_content_changes(
        tmp_path: Path) -> None:
    watcher = Watcher(tmp_path)
    (tmp_path / "a.csv").write_text("x\n")
    (tmp_path / "b.csv.part").write_text("being written")
    assert watcher.due() == []  # first look: not yet known to be still
    assert watcher.due() == [tmp_path / "a.csv"]
    assert watcher.due() == []
    os.utime(tmp_path / "a.csv", ns=(1, 1))  # touched, same content: not again
    watcher.due()
    assert watcher.due() == []
    (tmp_path / "a.csv").write_text("x\ny\n")
    watcher.due()
    assert watcher.due() == [tmp_path / "a.csv"]


def test_the_overlapping_exports_hold_every_stage_of_the_sample(
        sf_sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exports = overlapping_exports(sf_sample, tmp_path, CUTS)
    union, full = tmp_path / "union.jsonl", tmp_path / "full.jsonl"
    assert main(["import", "events", "--mapping", "sf-fire-units", *map(str, exports),
                 "--out", str(union)]) == 0
    assert main(["import", "events", "--mapping", "sf-fire-units", str(sf_sample),
                 "--out", str(full)]) == 0
    capsys.readouterr()
    assert union.read_bytes() == full.read_bytes()
    assert all(len(p.read_text().splitlines()) < 2935 for p in exports)
    seen = [{line.split(",")[2] for line in p.read_text().splitlines()[1:]} for p in exports]
    assert seen[0] & seen[1] and seen[1] & seen[2]  # incidents seen again, with more stages


def test_three_overlapping_exports_watched_give_the_union_imported_once(
        sf_sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    staging, folder = tmp_path / "staging", tmp_path / "drop"
    staging.mkdir()
    folder.mkdir()
    exports = overlapping_exports(sf_sample, staging, CUTS)
    union = tmp_path / "union.jsonl"
    assert main(["import", "events", "--mapping", "sf-fire-units", *map(str, exports),
                 "--out", str(union)]) == 0
    # what each export gives imported alone: the watch appends these, one after another
    made = []
    for export in exports:
        alone = tmp_path / f"{export.stem}.jsonl"
        assert main(["import", "events", "--mapping", "sf-fire-units", str(export),
                     "--out", str(alone)]) == 0
        made.append(alone.read_bytes())
    capsys.readouterr()
    assert all(made)
    sizes = [len(m.splitlines()) for m in made]

    out = tmp_path / "watched.jsonl"

    def lines_out() -> int:
        """Whole lines in the --out file so far (a line being written is not counted)."""
        try:
            return out.read_bytes().count(b"\n")
        except FileNotFoundError:
            return 0

    log = open(tmp_path / "watch.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "pacesetter.cli", "import", "events", "--mapping",
         "sf-fire-units", "--watch", str(folder), "--poll", "0.2", "--out", str(out)],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        for count, export in enumerate(exports, start=1):
            export.rename(folder / export.name)  # written elsewhere, dropped whole
            deadline = time.monotonic() + 60
            while lines_out() < sum(sizes[:count]):
                assert proc.poll() is None and time.monotonic() < deadline, \
                    (count, lines_out(), sizes, (tmp_path / "watch.log").read_text())
                time.sleep(0.1)
        (folder / "export-1.csv").touch()  # touched, not changed: not imported again
        time.sleep(1.0)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        log.close()
    assert code == 0, (tmp_path / "watch.log").read_text()
    # each export imported once, in the order dropped; the touched one not again
    assert out.read_bytes() == b"".join(made)

    settings = Settings()
    watched = compute_records(out.read_bytes().splitlines(), settings)
    once = compute_records(union.read_bytes().splitlines(), settings)
    assert watched.attendance == once.attendance
    assert sum(r["arrived"] for r in once.attendance.values()) == 1334
    # the repeats were only duplicates, which change nothing
    assert set(watched.rejected) <= {"duplicate"} and watched.rejected
