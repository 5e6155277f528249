"""Runs one stream worker: the Faust app, its agent, timers and the worker state."""

from __future__ import annotations

import gc
import logging
from pathlib import Path
from typing import Any

from services.contract.settings import Settings
from services.history.store import LazyStore, StoreUnavailable
from services.kafka.broker import ensure_topics, wait_for_kafka
from streams import agents
from streams.app import create_app
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
    agents.register(app, worker)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def close(sender: Any, **kwargs: Any) -> None:  # noqa: ARG001
        await worker.stop()

    log.info("worker %s consuming %s at %s", settings.worker_id, settings.topic_events,
             settings.bootstrap_servers)
    Worker(app, loglevel=logging.getLogger().level or logging.INFO,
           redirect_stdouts=False).execute_from_commandline()
