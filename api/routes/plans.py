"""Fresh plans on request: a scheduler queues a planning job and polls it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status

from api.deps import AUTH_RESPONSES, ReadModelDep, RoomDep, Scheduler, StoreDep
from api.planning import Planner, QueueFull
from api.routes.forecasts import no_store
from services.contract.settings import LINE_PATTERN

router = APIRouter(prefix="/api/v1", tags=["staffing"], dependencies=[Scheduler],
                   responses=AUTH_RESPONSES)


def _planner(request: Request) -> Planner:
    planner: Planner = request.app.state.planner
    return planner


@router.post(
    "/rooms/{room}/plans", status_code=status.HTTP_202_ACCEPTED,
    summary="Queue fresh forecasts and staffing plans of a room's lines",
    responses={202: {"description": "queued: poll the job at its URL (also `Location`)"},
               404: {"description": "unknown room"},
               429: {"description": "the planner's queue is full: ask again later"},
               503: {"description": "no history store"}},
)
def request_plans(
    room: RoomDep, model: ReadModelDep, store: StoreDep, request: Request, response: Response,
    line: Annotated[str | None, Query(pattern=LINE_PATTERN,
                                      description="one line; default every line of the room")]
    = None,
    days: Annotated[int, Query(ge=1, le=62, description="local days to plan from today")] = 14,
) -> dict[str, Any]:
    """Queue a planning job; the plans are saved in the store when it is done."""
    if store is None:
        raise no_store()
    lines = [line] if line is not None else next(
        (r["lines"] for r in model.rooms() if r["room"] == room), [])
    if not lines:
        raise HTTPException(status.HTTP_409_CONFLICT, f"room {room!r} has no lines to plan yet")
    try:
        job = _planner(request).submit(room, lines, days)
    except QueueFull:
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS,
                            "the planner's queue is full: ask again in a minute",
                            headers={"Retry-After": "60"}) from None
    url = f"/api/v1/plans/{job.id}"
    response.headers["Location"] = url
    return {**job.to_dict(), "url": url}


@router.get("/plans/{job_id}", summary="A planning job: queued, running, done or failed",
            responses={404: {"description": "no such job (or forgotten)"}})
def plan_job(request: Request,
             job_id: Annotated[str, Path(max_length=64)]) -> dict[str, Any]:
    """The job, with the lines planned and why any could not be."""
    job = _planner(request).get(job_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no planning job {job_id!r}")
    return {**job.to_dict(), "url": f"/api/v1/plans/{job.id}"}
