"""`GET /api/v1/admin/jobs`: what operators need to see of the work done after requests."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Request
from sqlalchemy.ext.asyncio import AsyncSession

from sellerdesk import jobs, outbox
from sellerdesk.auth.dependencies import AdminUser
from sellerdesk.config import Settings
from sellerdesk.db import SessionDep
from sellerdesk.kit.openapi import errors
from sellerdesk.kit.types import OutputModel

router = APIRouter(prefix="/admin/jobs", tags=["admin"])


class OutboxKind(OutputModel):
    kind: str
    pending: int
    failed: int


class FailedEvent(OutputModel):
    id: int
    kind: str
    attempts: int
    last_error: str | None
    created_at: datetime


class OutboxStatus(OutputModel):
    pending: int
    failed: int
    by_kind: list[OutboxKind]
    recent_failures: list[FailedEvent]


class PeriodicJobStatus(OutputModel):
    name: str
    every_seconds: int
    running: bool
    last_started_at: datetime | None
    last_finished_at: datetime | None
    last_status: str | None
    last_error: str | None


class JobsStatus(OutputModel):
    mode: Literal["celery", "in-process"]
    outbox: OutboxStatus
    periodic: list[PeriodicJobStatus]


@router.get("", response_model=JobsStatus, responses=errors(401, 403))
async def jobs_status(request: Request, session: SessionDep, _: AdminUser) -> JobsStatus:
    """Outbox pending and failed events (per kind) and the last run of each periodic job."""
    return await status(session, request.app.state.settings)


async def status(session: AsyncSession, settings: Settings) -> JobsStatus:
    """What the jobs route shows (the dashboard's events page shows it too)."""
    kinds = await outbox.counts(session)
    failures = await outbox.recent_failures(session)
    runs = await jobs.last_runs(session)
    periodic = []
    for job in jobs.SCHEDULE:
        run = runs.get(job.name)
        periodic.append(
            PeriodicJobStatus(
                name=job.name,
                every_seconds=job.every_seconds,
                running=run is not None and run.lease_owner is not None,
                last_started_at=run.last_started_at if run else None,
                last_finished_at=run.last_finished_at if run else None,
                last_status=run.last_status if run else None,
                last_error=run.last_error if run else None,
            )
        )
    return JobsStatus(
        mode="celery" if settings.broker_url else "in-process",
        outbox=OutboxStatus(
            pending=sum(k.pending for k in kinds),
            failed=sum(k.failed for k in kinds),
            by_kind=[OutboxKind(kind=k.kind, pending=k.pending, failed=k.failed) for k in kinds],
            recent_failures=[
                FailedEvent(
                    id=f.id,
                    kind=f.kind,
                    attempts=f.attempts,
                    last_error=f.last_error,
                    created_at=f.created_at,
                )
                for f in failures
            ],
        ),
        periodic=periodic,
    )
