"""Runs one stream worker: the Faust app, its agent, timers and the worker state."""

from __future__ import annotations

import gc
import logging
from pathlib import Path
from typing import Any

import faust
from faust.types import TP

from services.contract.settings import Settings, SettingsError
from services.history.store import LazyStore, StoreUnavailable
from services.kafka.broker import ensure_topics, wait_for_kafka
from streams import agents
from streams.app import create_app, live_fetch_wait_ms
from streams.observe import WorkerObserver
from streams.worker import StreamWorker

log = logging.getLogger(__name__)

# The engine allocates containers by the million and frees them by reference counting; with
# the default thresholds (700, 10, 10) cyclic collection cost ~8 % of the engine's time.
GC_THRESHOLDS = (50_000, 20, 100)


def open_store(settings: Settings) -> LazyStore:
    """The history store the worker saves final records to.

    A database that cannot be reached does not stop the worker (its sink queues records until
    the store answers); a schema that is behind does, naming the command that upgrades it.
    """
    store = LazyStore(settings.store_url)
    try:
        store.get()
    except StoreUnavailable as exc:
        log.warning("%s: streaming anyway; final records wait for the store", exc)
    return store


def prepare_topics(settings: Settings) -> None:
    """Create the topics the worker reads and writes, if missing."""
    wait_for_kafka(settings.bootstrap_servers, 30, settings=settings)
    ensure_topics(
        settings.bootstrap_servers,
        [settings.topic_events, settings.topic_intervals, settings.topic_live,
         settings.topic_alerts, settings.topic_deadletter],
        settings.partitions,
        settings.replication_factor,
        settings.output_topic_configs(),
        settings=settings,
    )


def run_worker(settings: Settings, store: Any = None) -> None:
    """Run a worker until SIGINT/SIGTERM (blocks)."""
    from mode import Worker

    prepare_topics(settings)
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)  # Faust makes only the leaf
    app = create_app(settings)
    gc.set_threshold(*GC_THRESHOLDS)
    worker = StreamWorker(settings, store=store if store is not None else open_store(settings),
                          group_id=settings.worker_id, freeze_gc=True)
    observer = WorkerObserver(worker, fetch_wait=lambda: live_fetch_wait_ms(app))
    if settings.worker_metrics_port:
        try:
            observer.listen(settings.worker_metrics_host, settings.worker_metrics_port)
        except OSError as exc:
            raise SettingsError(
                f"PACESETTER_WORKER_METRICS_PORT: cannot listen on {settings.worker_metrics_host}:"
                f"{settings.worker_metrics_port} ({exc.strerror}): give each worker on a host a "
                "port of its own, or 0 for none") from None
    agents.register(app, worker)
    topic = settings.topic_events

    def highwater(partition: int) -> int | None:
        try:
            return int(app.consumer.highwater(TP(topic, partition)))
        except Exception:  # noqa: BLE001 - no consumer yet, or not fetched yet
            return None

    worker.highwater = highwater

    class CommitSensor(faust.Sensor):
        """Notes each completed offset commit: the worker's last-commit age."""

        def on_commit_completed(self, consumer: Any, state: Any) -> None:  # noqa: ARG002
            observer.committed()

    app.sensors.add(CommitSensor())

    @app.task
    async def observe() -> None:
        await observer.start()

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def close(sender: Any, **kwargs: Any) -> None:  # noqa: ARG001
        await observer.stop()
        await worker.stop()

    log.info("worker %s consuming %s at %s", settings.worker_id, settings.topic_events,
             settings.bootstrap_servers)
    Worker(app, loglevel=logging.getLogger().level or logging.INFO,
           redirect_stdouts=False).execute_from_commandline()
