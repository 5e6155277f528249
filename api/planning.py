"""Plan jobs a scheduler asks for: a bounded queue, one planner thread, jobs to poll.

A fit takes a core for seconds to minutes, so it never runs in a request: ``POST .../plans``
queues a job and answers at once (202 with the job's URL); a full queue is refused (429) rather
than letting requests pile up fits.
"""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from services.contract.events import format_time

log = logging.getLogger(__name__)

QUEUE_SIZE = 4  # jobs waiting behind the one running
KEEP_JOBS = 200  # finished jobs remembered for polling


def _now() -> str:
    return format_time(datetime.now(UTC).replace(microsecond=0))


@dataclass
class PlanJob:
    """One request for fresh plans of a room's lines."""

    id: str
    room: str
    lines: list[str]
    days: int
    state: str = "queued"  # queued, running, done, failed
    created_at: str = field(default_factory=_now)
    started_at: str | None = None
    finished_at: str | None = None
    planned: list[str] = field(default_factory=list)  # lines planned
    errors: dict[str, str] = field(default_factory=dict)  # line -> why not

    def to_dict(self) -> dict[str, Any]:
        """The job as the API shows it."""
        return asdict(self)


class QueueFull(Exception):
    """The planner's queue is full: ask again later."""


Runner = Callable[[PlanJob], None]


class Planner:
    """Runs plan jobs one at a time on a thread of its own."""

    def __init__(self, run: Runner, size: int = QUEUE_SIZE) -> None:
        self.run = run
        self.pending: queue.Queue[PlanJob] = queue.Queue(size)
        self.jobs: OrderedDict[str, PlanJob] = OrderedDict()
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def submit(self, room: str, lines: list[str], days: int) -> PlanJob:
        """Queue a job.

        Raises:
            QueueFull: no room in the queue.
        """
        job = PlanJob(uuid.uuid4().hex[:12], room, lines, days)
        try:
            self.pending.put_nowait(job)
        except queue.Full:
            raise QueueFull from None
        with self.lock:
            self.jobs[job.id] = job
            while len(self.jobs) > KEEP_JOBS:
                self.jobs.popitem(last=False)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._work, name="planner", daemon=True)
                self.thread.start()
        return job

    def get(self, job_id: str) -> PlanJob | None:
        """A job by id, or None."""
        with self.lock:
            return self.jobs.get(job_id)

    def _work(self) -> None:
        while True:
            job = self.pending.get()
            job.state, job.started_at = "running", _now()
            try:
                self.run(job)
                job.state = "done" if job.planned or not job.errors else "failed"
            except Exception as exc:  # noqa: BLE001 - the job says what went wrong
                log.exception("plan job %s failed", job.id)
                job.state = "failed"
                job.errors["*"] = str(exc)
            job.finished_at = _now()
            self.pending.task_done()


def plan_with_store(store: Any, settings: Any) -> Runner:
    """A runner that forecasts and plans each line of a job and saves the plans."""

    def run(job: PlanJob) -> None:
        from forecasting import service

        outcomes = service.plan_many(store, settings, [(job.room, line) for line in job.lines],
                                     days=job.days, jobs=1, progress=False, save=True)
        for outcome in outcomes:
            if outcome.error:
                job.errors[outcome.line] = outcome.error
            else:
                job.planned.append(outcome.line)

    return run
