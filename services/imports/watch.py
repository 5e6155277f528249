"""Watching a folder of exports: each new or changed file is imported once, when it is still."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

_IGNORED_SUFFIXES = (".tmp", ".part", ".partial", ".swp")


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


@dataclass
class Watcher:
    """Which files of a folder are due for import.

    A file is due when it is new or its content changed since it was imported, and its size
    and modification time held still between two looks (a file being written is left alone).
    Files are taken oldest first, so exports are imported in the order they were written.
    """

    directory: Path
    seen: dict[str, tuple[int, int]] = field(default_factory=dict)
    imported: dict[str, str] = field(default_factory=dict)

    def due(self) -> list[Path]:
        """The files ready to import now, oldest first."""
        ready: list[tuple[int, str, Path]] = []
        current: dict[str, tuple[int, int]] = {}
        try:
            entries = list(self.directory.iterdir())
        except OSError as exc:
            logger.warning("cannot list %s: %s", self.directory, exc)
            return []
        for path in entries:
            if path.name.startswith(".") or path.name.endswith(_IGNORED_SUFFIXES):
                continue
            try:
                stat = path.stat()
            except OSError:
                continue
            if not path.is_file():
                continue
            signature = (stat.st_size, stat.st_mtime_ns)
            current[path.name] = signature
            if self.seen.get(path.name) == signature:  # still since the last look
                ready.append((stat.st_mtime_ns, path.name, path))
        self.seen = current
        due = []
        for _mtime, name, path in sorted(ready):
            try:
                digest = _digest(path)
            except OSError:
                continue
            if self.imported.get(name) != digest:
                due.append(path)
                self.imported[name] = digest
        return due


def watch(directory: str | Path, handle: Callable[[Path], None],
          stop: Callable[[], bool], poll_seconds: float = 2.0,
          sleep: Callable[[float], None] = time.sleep) -> None:
    """Import every new or changed file of ``directory`` with ``handle`` until ``stop()``."""
    watcher = Watcher(Path(directory))
    while not stop():
        for path in watcher.due():
            handle(path)
        sleep(poll_seconds)
