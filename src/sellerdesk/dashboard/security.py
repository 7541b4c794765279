"""Who is looking at a dashboard page, and whether a form really came from one of our pages.

- The session cookie holds a random token (HttpOnly, SameSite=Lax, Secure on HTTPS, path
  `/dashboard`); the database holds its SHA-256 (`auth.sessions`), so signing out or expiring
  ends it everywhere.
- Every state-changing form carries `csrf_token`: an HMAC of the session token under
  SECRET_KEY, so it is tied to this session and cannot be guessed from another site. It is
  checked on every POST before anything else; a missing or wrong one is a 403 page.
- The sign-in form has no session yet: it is protected by the same HMAC over a short-lived
  random cookie of its own (a double-submit token), so no other site can sign a visitor in.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData

from sellerdesk.auth import sessions
from sellerdesk.config import Settings
from sellerdesk.db import SessionDep
from sellerdesk.errors import AppError, Forbidden, ValidationFailed
from sellerdesk.models import User

SESSION_COOKIE = "sellerdesk_session"
LOGIN_COOKIE = "sellerdesk_login"
COOKIE_PATH = "/dashboard"
LOGIN_URL = "/dashboard/login"
LOGIN_COOKIE_SECONDS = 3600


class SignedOut(Exception):
    """No live session: the visitor is sent to the sign-in page, then back to `next_url`."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url

    @property
    def login_url(self) -> str:
        return f"{LOGIN_URL}?next={quote(self.next_url, safe='/')}"


class CsrfRejected(AppError):
    status_code = 403
    code = "forbidden"
    message = "This form has expired or did not come from this site. Reload the page and retry."


def is_https(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"


def _mac(settings: Settings, purpose: str, token: str) -> str:
    message = f"{purpose}:{hashlib.sha256(token.encode()).hexdigest()}".encode()
    return hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()


def csrf_token(settings: Settings, session_token: str) -> str:
    """The form token of a session (the same for every form of that session)."""
    return _mac(settings, "dashboard-csrf", session_token)


def login_form_token(settings: Settings, login_cookie: str) -> str:
    return _mac(settings, "dashboard-login", login_cookie)


def new_login_cookie() -> str:
    return secrets.token_urlsafe(24)


def tokens_match(expected: str, given: object) -> bool:
    return isinstance(given, str) and hmac.compare_digest(expected.encode(), given.encode())


def safe_next(value: object) -> str:
    """Where to go after signing in: only a path of the dashboard (no open redirect)."""
    if (
        isinstance(value, str)
        and value.startswith("/dashboard")
        and not value.startswith("//")
        and "\\" not in value
        and len(value) <= 500
    ):
        return value
    return "/dashboard"


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


@dataclass(frozen=True, slots=True)
class Viewer:
    """The signed-in user of a dashboard page and the form token of their session."""

    user: User
    session_token: str
    csrf: str

    @property
    def is_admin(self) -> bool:
        return self.user.is_superuser


def _here(request: Request) -> str:
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


async def get_viewer(request: Request, session: SessionDep) -> Viewer:
    """The signed-in user; a missing, expired or ended session (or an inactive user) is sent
    to the sign-in page."""
    token = request.cookies.get(SESSION_COOKIE)
    signed_in = await sessions.resolve(session, token) if token else None
    if token is None or signed_in is None:
        raise SignedOut(_here(request) if request.method == "GET" else "/dashboard")
    return Viewer(signed_in.user, token, csrf_token(settings_of(request), token))


ViewerDep = Annotated[Viewer, Depends(get_viewer)]


async def undo(session: AsyncSession, viewer: Viewer) -> None:
    """Roll back what a failed form did, before its page is shown again with the error (the
    rollback expires every loaded row: the viewer's user is read again)."""
    await session.rollback()
    await session.refresh(viewer.user)


async def get_admin(viewer: ViewerDep) -> Viewer:
    if not viewer.is_admin:
        raise Forbidden("This page is for administrators.")
    return viewer


AdminDep = Annotated[Viewer, Depends(get_admin)]


async def read_form(request: Request) -> FormData:
    try:
        return await request.form()
    except (AssertionError, ValueError) as exc:  # a body that is not a form
        raise ValidationFailed("The form could not be read.") from exc


async def verified_form(request: Request, viewer: ViewerDep) -> FormData:
    """The posted form, once its `csrf_token` is this session's (403 otherwise)."""
    form = await read_form(request)
    if not tokens_match(viewer.csrf, form.get("csrf_token")):
        raise CsrfRejected()
    return form


FormDep = Annotated[FormData, Depends(verified_form)]
"""A state-changing form of a signed-in user, its CSRF token checked."""
