"""Jinja2 pages: one environment, the filters that show money and credits, and the headers
every dashboard page carries (a strict Content-Security-Policy, no caching)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from sellerdesk.config import Settings
from sellerdesk.dashboard.security import Viewer, settings_of
from sellerdesk.kit.money import format_amount

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"


def money(value: Decimal | str | int | None) -> str:
    """37.41: two places, never a float."""
    if value is None:
        return ""
    try:
        return format_amount(Decimal(str(value)))
    except InvalidOperation:  # what someone typed into a form, shown back as it was
        return str(value)


def credits(value: int | None) -> str:
    """Credits are whole units."""
    return "" if value is None else str(int(value))


def when(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M UTC")


_env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html", "svg"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters.update(money=money, credits=credits, when=when)


def content_security_policy(settings: Settings) -> str:
    """Everything from this origin only (no CDN, no inline script); forms post here, or to
    Stripe's hosted Checkout when Stripe takes the payments."""
    form_action = "'self'"
    if settings.payment_provider == "stripe":
        form_action += " https://checkout.stripe.com"
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"form-action {form_action}; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    )


def page_headers(settings: Settings) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(settings),
        "Cache-Control": "no-store",
    }


# Fixed texts for `?done=` after a successful form (never echoing the query string).
NOTICES = {
    "signed_out": "You are signed out.",
    "key_revoked": "The API key was revoked; it stops working at once.",
    "purchased": "Payment received: the credits are on your balance.",
    "purchase_cancelled": "The payment was not completed; nothing was charged.",
    "shipped": "The order is marked shipped.",
    "delivered": "The order is marked delivered.",
    "cancelled": "The order is cancelled.",
    "refunded": "The refund was made.",
    "product_saved": "The product was saved.",
    "user_updated": "The user was updated.",
    "stock_adjusted": "The stock was adjusted.",
}


def render(
    request: Request,
    template: str,
    *,
    viewer: Viewer | None,
    title: str,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """A whole page (or, for htmx, the same page: it picks the part it needs)."""
    done = request.query_params.get("done")
    html = _env.get_template(template).render(
        request=request,
        viewer=viewer,
        csrf=viewer.csrf if viewer else "",
        title=title,
        path=request.url.path,
        notice=NOTICES.get(done or ""),
        **{"error": None, **context},
    )
    return HTMLResponse(html, status_code=status_code, headers=page_headers(settings_of(request)))


def redirect(url: str, *, done: str | None = None) -> RedirectResponse:
    """303 See Other after a successful form (post/redirect/get)."""
    if done is not None:
        url = f"{url}{'&' if '?' in url else '?'}done={done}"
    return RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})
