"""`/dashboard`: signing in and out, the home page, static files, and the page routers.

None of it is in the API's OpenAPI document (`include_in_schema=False`)."""

from __future__ import annotations

from datetime import timedelta

import structlog
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from sellerdesk.auth import service as auth_service
from sellerdesk.auth import sessions
from sellerdesk.dashboard import account, admin, admin_store, errors
from sellerdesk.dashboard.rendering import STATIC, redirect, render
from sellerdesk.dashboard.security import (
    COOKIE_PATH,
    LOGIN_COOKIE,
    LOGIN_COOKIE_SECONDS,
    SESSION_COOKIE,
    FormDep,
    ViewerDep,
    is_https,
    login_form_token,
    new_login_cookie,
    read_form,
    safe_next,
    settings_of,
    tokens_match,
)
from sellerdesk.db import SessionDep
from sellerdesk.errors import AppError
from sellerdesk.kit.middleware import client_ip

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/dashboard", include_in_schema=False)


def _login_page(
    request: Request,
    *,
    next_url: str,
    email: str = "",
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    cookie = new_login_cookie()
    response = render(
        request,
        "login.html",
        viewer=None,
        title="Sign in",
        status_code=status_code,
        login_token=login_form_token(settings_of(request), cookie),
        next_url=next_url,
        email=email,
        error=error,
    )
    response.set_cookie(
        LOGIN_COOKIE,
        cookie,
        max_age=LOGIN_COOKIE_SECONDS,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=is_https(request),
    )
    return response


@router.get("/login")
async def login_form(request: Request, next: str | None = None) -> Response:
    """The sign-in form."""
    return _login_page(request, next_url=safe_next(next))


@router.post("/login")
async def login(request: Request, session: SessionDep) -> Response:
    """Check the credentials (the API's login throttle and rules) and start a session."""
    form = await read_form(request)
    settings = settings_of(request)
    next_url = safe_next(form.get("next"))
    email = str(form.get("email") or "")[:320]
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    if not cookie or not tokens_match(login_form_token(settings, cookie), form.get("csrf_token")):
        return _login_page(
            request,
            next_url=next_url,
            email=email,
            error="The sign-in form expired; please try again.",
            status_code=403,
        )
    password = form.get("password")
    if not email or not isinstance(password, str) or not 0 < len(password) <= 128:
        return _login_page(
            request,
            next_url=next_url,
            email=email,
            error="Enter your email and password.",
            status_code=422,
        )
    try:
        user = await auth_service.authenticate(
            session, request.app.state.auth, email, password, client_ip(request.scope)
        )
    except AppError as exc:
        await session.rollback()
        response = _login_page(
            request, next_url=next_url, email=email, error=exc.message, status_code=exc.status_code
        )
        for name, value in (exc.headers or {}).items():
            if name.lower() == "retry-after":
                response.headers[name] = value
        return response
    token, _ = await sessions.start(
        session, user, timedelta(hours=settings.DASHBOARD_SESSION_HOURS)
    )
    response = redirect(next_url)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=settings.DASHBOARD_SESSION_HOURS * 3600,
        path=COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=is_https(request),
    )
    response.delete_cookie(LOGIN_COOKIE, path=COOKIE_PATH)
    return response


@router.post("/logout")
async def logout(request: Request, session: SessionDep, viewer: ViewerDep, _: FormDep) -> Response:
    """End this browser's session."""
    await sessions.end(session, viewer.session_token)
    log.info("browser_session_ended", user_id=viewer.user.id)
    response = redirect("/dashboard/login", done="signed_out")
    response.delete_cookie(
        SESSION_COOKIE, path=COOKIE_PATH, httponly=True, samesite="lax", secure=is_https(request)
    )
    return response


@router.get("")
async def home(viewer: ViewerDep) -> Response:
    """Administrators land on the sales overview, customers on their usage."""
    return redirect("/dashboard/admin" if viewer.is_admin else "/dashboard/usage")


router.include_router(account.router)
router.include_router(admin.router)
router.include_router(admin_store.router)


def install(app: FastAPI) -> None:
    """Mount the dashboard on the app: pages, static files, HTML error pages."""
    app.include_router(router)
    app.mount("/dashboard/static", StaticFiles(directory=STATIC), name="dashboard-static")
    errors.install(app)
