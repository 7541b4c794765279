"""Rendering and sending one email: Jinja2 text + HTML templates, aiosmtplib over SMTP.

With no `SMTP_HOST` an email is rendered and logged as skipped (the embedded default sends
nothing and loses nothing). STARTTLS is used whenever the server offers it (`SMTP_SECURITY`
`auto`), required with `starttls`, implicit TLS with `tls`. SMTP failures become `MailError`
with `transient` set for 4xx answers and lost connections, so the outbox retries only those.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import Any

import aiosmtplib
import structlog
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from sellerdesk.config import Settings

log = structlog.get_logger(__name__)

_templates = Environment(
    loader=PackageLoader("sellerdesk.notifications", "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


def _money(value: Any) -> str:
    """`46.9` → `46.90`: money always with two places."""
    return str(Decimal(str(value)).quantize(Decimal("0.01")))


_templates.filters["money"] = _money


class MailError(Exception):
    """Sending failed; `transient` when a later try may succeed."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True, slots=True)
class Email:
    """One message to one recipient."""

    kind: str
    to: str
    subject: str
    text: str
    html: str
    message_id: str


def message_id(settings: Settings, event_id: int, kind: str, recipient: str) -> str:
    """The same Message-ID for the same (event, kind, recipient): a resend after a crash is
    recognisably the same message."""
    domain = parseaddr(settings.EMAIL_FROM)[1].rpartition("@")[2] or "sellerdesk.localhost"
    digest = hashlib.sha256(recipient.lower().encode()).hexdigest()[:16]
    return f"<event-{event_id}.{kind}.{digest}@{domain}>"


def render(
    settings: Settings, *, kind: str, event_id: int, to: str, subject: str, **context: Any
) -> Email:
    """Render `<kind>.txt` and `<kind>.html` with `context`."""
    values = {"subject": subject, **context}
    return Email(
        kind=kind,
        to=to,
        subject=subject,
        text=_templates.get_template(f"{kind}.txt").render(values),
        html=_templates.get_template(f"{kind}.html").render(values),
        message_id=message_id(settings, event_id, kind, to),
    )


def _message(settings: Settings, email: Email) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.EMAIL_FROM
    message["To"] = email.to
    message["Subject"] = email.subject
    message["Message-ID"] = email.message_id
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["X-Sellerdesk-Kind"] = email.kind
    message.set_content(email.text)
    message.add_alternative(email.html, subtype="html")
    return message


async def send(settings: Settings, email: Email) -> None:
    """Send one email through SMTP_HOST (or log it as skipped when none is set)."""
    if not settings.SMTP_HOST:
        log.info("email_skipped", kind=email.kind, message_id=email.message_id, reason="no_smtp")
        return
    security = settings.SMTP_SECURITY
    try:
        await aiosmtplib.send(
            _message(settings, email),
            hostname=settings.SMTP_HOST,
            port=settings.SMTP_PORT,
            username=settings.EMAIL_USERNAME,
            password=settings.EMAIL_PASSWORD,
            use_tls=security == "tls",
            # None: STARTTLS when the server offers it; True: refuse a server that does not.
            start_tls={"auto": None, "starttls": True}.get(security, False),
            timeout=settings.SMTP_TIMEOUT_SECONDS,
        )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        codes = [error.code for error in exc.recipients]
        raise MailError(
            f"recipient refused ({codes})", transient=all(400 <= c < 500 for c in codes)
        ) from exc
    except aiosmtplib.SMTPNotSupported as exc:  # e.g. no STARTTLS although it is required
        raise MailError(str(exc), transient=False) from exc
    except aiosmtplib.SMTPResponseException as exc:
        raise MailError(f"SMTP {exc.code}", transient=400 <= exc.code < 500) from exc
    except (aiosmtplib.SMTPException, OSError) as exc:
        # Connection refused, dropped or timed out, or a server without STARTTLS when it is
        # required: worth another try later.
        raise MailError(type(exc).__name__, transient=True) from exc
    log.info("email_sent", kind=email.kind, message_id=email.message_id)
