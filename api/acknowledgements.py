"""Acknowledgements shared by every API replica: kept in the history store, polled from it.

A replica that records an acknowledgement tells its own dashboards at once; the others see it
within ``POLL_SECONDS``, when they next read the store's episodes of their firing alerts.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import Any

from api.readmodel import ReadModel

log = logging.getLogger(__name__)

POLL_SECONDS = 2.0


class AcknowledgementPoller:
    """Reads the acknowledgements of firing alerts from the store into the read model."""

    def __init__(self, model: ReadModel, store: Any, interval: float = POLL_SECONDS) -> None:
        self.model = model
        self.store = store
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll(self) -> int:
        """One look at the store; returns how many acknowledgements were new here."""
        new = 0
        for room, (low, high) in sorted(self.model.firing_spans().items()):
            rows = self.store.alert_history(room, low, high + timedelta(seconds=1))
            new += self.model.acknowledge(rows)
        return new

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.model.flush_episodes()
                self.poll()
            except Exception as exc:  # noqa: BLE001 - the store may be away for a while
                log.warning("acknowledgements: could not read the store: %s", exc)
            self._stop.wait(self.interval)

    def start(self) -> AcknowledgementPoller:
        """Poll on a background thread until :meth:`stop`."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="acknowledgements",
                                            daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop polling."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(5)
