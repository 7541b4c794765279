"""Admin pages about the business and its people: the sales overview (the stats service), users,
the credit ledger, and recent webhook events with the state of the jobs."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response

from sellerdesk import admin_jobs, admin_stats
from sellerdesk.credits import service as credits_service
from sellerdesk.dashboard.account import PAGE_SIZE, PageNumber
from sellerdesk.dashboard.charts import bar_chart
from sellerdesk.dashboard.rendering import money, redirect, render
from sellerdesk.dashboard.security import AdminDep, FormDep
from sellerdesk.db import SessionDep
from sellerdesk.errors import AppError, ValidationFailed
from sellerdesk.kit.dates import day_range
from sellerdesk.kit.pagination import PageParams
from sellerdesk.kit.types import IdPath
from sellerdesk.payments import service as payments_service
from sellerdesk.users import service as users_service
from sellerdesk.users.schemas import UserUpdateAdmin

router = APIRouter(prefix="/admin")

LedgerKind = Literal["purchase", "charge", "refund", "grant", "adjustment"]
USER_ACTIONS: dict[str, dict[str, bool]] = {
    "activate": {"is_active": True},
    "deactivate": {"is_active": False},
    "promote": {"is_superuser": True},
    "demote": {"is_superuser": False},
}


@router.get("")
async def overview(
    request: Request,
    session: SessionDep,
    viewer: AdminDep,
    first: Annotated[str | None, Query(alias="from", max_length=10)] = None,
    last: Annotated[str | None, Query(alias="to", max_length=10)] = None,
) -> Response:
    """Orders and revenue per day as charts, credits sold, and the top products."""
    error, status = None, 200
    try:
        days = day_range(first, last)
    except AppError as exc:
        days, error, status = day_range(None, None), exc.message, exc.status_code
    currency = request.app.state.settings.CURRENCY
    stats = await admin_stats.store_stats(session, days, currency)
    dates = [d.date for d in stats.days]
    orders_chart = bar_chart(
        "orders",
        "Orders placed per day",
        dates,
        [("Orders", [d.orders for d in stats.days])],
        str,
        "orders",
    )
    revenue_chart = bar_chart(
        "revenue",
        f"Revenue per day ({currency.upper()}, captured minus refunded)",
        dates,
        [("Revenue", [d.revenue for d in stats.days])],
        money,
        currency.upper(),
    )
    return render(
        request,
        "admin/overview.html",
        viewer=viewer,
        title="Sales overview",
        status_code=status,
        error=error,
        days=days,
        stats=stats,
        orders_total=sum(d.orders for d in stats.days),
        revenue_total=sum((d.revenue for d in stats.days), start=0),
        credits_total=sum(d.credits_sold for d in stats.days),
        orders_chart=orders_chart,
        revenue_chart=revenue_chart,
    )


# --------------------------------------------------------------------------- users


@router.get("/users")
async def users(
    request: Request, session: SessionDep, viewer: AdminDep, page: PageNumber = 1
) -> Response:
    """Every user, oldest first, with activate/deactivate and promote/demote."""
    params = PageParams(page, PAGE_SIZE)
    rows, total = await users_service.list_users(session, params)
    return render(
        request,
        "admin/users.html",
        viewer=viewer,
        title="Users",
        users=rows,
        page=page,
        page_size=PAGE_SIZE,
        total=total,
    )


@router.post("/users/{user_id}")
async def update_user(
    user_id: IdPath, session: SessionDep, viewer: AdminDep, form: FormDep
) -> Response:
    """`PATCH /users/{id}` from a button: one of activate, deactivate, promote, demote."""
    change = USER_ACTIONS.get(str(form.get("action")))
    if change is None:
        raise ValidationFailed("Unknown action.")
    await users_service.update_user(session, viewer.user, user_id, UserUpdateAdmin(**change))
    back = str(form.get("page") or "1")
    return redirect(
        f"/dashboard/admin/users?page={back if back.isdigit() else 1}", done="user_updated"
    )


# --------------------------------------------------------------------------- ledger


@router.get("/ledger")
async def ledger(
    request: Request,
    session: SessionDep,
    viewer: AdminDep,
    page: PageNumber = 1,
    user: Annotated[str, Query(max_length=320)] = "",
    kind: LedgerKind | Literal[""] = "",
) -> Response:
    """Every account's ledger, newest first, by user (email or id) and kind."""
    params = PageParams(page, PAGE_SIZE)
    who = user.strip()
    user_id: int | None = None
    error = None
    if who.isdigit() and 0 < int(who) < 2**63:
        user_id = int(who)
    elif who:
        found = await users_service.find_by_email(session, who)
        user_id = found.id if found is not None else None
        error = None if found is not None else f"No user has the email {who}."
    if error is None:
        entries, total = await credits_service.search_ledger(
            session, params, user_id=user_id, kind=kind or None
        )
    else:
        entries, total = [], 0
    return render(
        request,
        "admin/ledger.html",
        viewer=viewer,
        title="Credit ledger",
        status_code=404 if error else 200,
        error=error,
        entries=entries,
        total=total,
        page=page,
        page_size=PAGE_SIZE,
        user=who,
        kind=kind,
        kinds=["purchase", "charge", "refund", "grant", "adjustment"],
    )


# --------------------------------------------------------------------------- events and jobs


@router.get("/events")
async def events(request: Request, session: SessionDep, viewer: AdminDep) -> Response:
    """Recent provider webhook events, the outbox and the periodic jobs (`GET /admin/jobs`)."""
    return render(
        request,
        "admin/events.html",
        viewer=viewer,
        title="Events & jobs",
        webhooks=await payments_service.recent_webhook_events(session),
        jobs=await admin_jobs.status(session, request.app.state.settings),
    )
