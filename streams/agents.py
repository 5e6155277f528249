"""Agents and timers: feed the events topic to the worker and let the wall clock close intervals."""

from __future__ import annotations

import functools
import logging
from typing import Any

import faust

from streams.app import events_topic
from streams.worker import FLUSH_SECONDS, StreamWorker

log = logging.getLogger(__name__)

TICK_SECONDS = 1.0


def register(app: faust.App, worker: StreamWorker) -> None:
    """Attach the agent, the timers and the rebalance hooks of ``worker`` to ``app``."""
    topic = events_topic(app, worker.settings)
    name = worker.settings.topic_events

    @app.agent(topic, name="track_calls")
    async def track_calls(stream: faust.StreamT[Any]) -> None:
        """Apply each message of the events topic to its room, once.

        Acknowledged by hand: a message that left dead letters is acknowledged (so its
        offset committed) only once a flush has published them (``StreamWorker.hold``).
        """
        manual = stream.noack()  # type: ignore[attr-defined]  # Stream has it, StreamT not
        async for event in manual.events():
            message = event.message
            if await worker.handle(message.partition, message.offset, message.key,
                                   message.value, int((message.timestamp or 0) * 1000)):
                worker.hold(functools.partial(manual.ack, event))
            else:
                await manual.ack(event)

    @app.timer(interval=FLUSH_SECONDS)
    async def publish_changes() -> None:
        """Publish what changed even when no message arrives."""
        await worker.flush_due()

    @app.timer(interval=TICK_SECONDS)
    async def close_intervals() -> None:
        """Close intervals of live rooms by the wall clock and refresh queue waits."""
        await worker.tick()

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def on_assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:  # noqa: ARG001
        worker.on_assigned(sorted(tp.partition for tp in assigned if tp.topic == name))

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:  # noqa: ARG001
        worker.on_revoked(sorted(tp.partition for tp in revoked if tp.topic == name))

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]
    async def on_rebalanced(sender: Any, **kwargs: Any) -> None:  # noqa: ARG001
        worker.on_rebalanced(sorted(tp.partition for tp in app.consumer.assignment()
                                    if tp.topic == name))

    @app.task
    async def start_publisher() -> None:
        await worker.start()

