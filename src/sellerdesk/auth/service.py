"""Registration, login, refresh-token rotation with reuse detection, and token → user."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from sellerdesk.auth import tokens
from sellerdesk.auth.passwords import Passwords
from sellerdesk.auth.schemas import TokenPair
from sellerdesk.auth.supabase import SupabaseVerifier
from sellerdesk.config import Settings
from sellerdesk.errors import Conflict, Forbidden, InvalidCredentials, InvalidToken
from sellerdesk.kit.ratelimit import LoginThrottle
from sellerdesk.models import RefreshToken, User
from sellerdesk.users.repository import RefreshTokenRepository, UserRepository
from sellerdesk.users.schemas import UserCreate

log = structlog.get_logger(__name__)

_SESSION_ENDED = "This session has ended (password changed or account deactivated); log in again."


@dataclass(slots=True)
class AuthContext:
    """What auth needs besides the session; built once in the app's lifespan."""

    settings: Settings
    passwords: Passwords
    throttle: LoginThrottle
    supabase: SupabaseVerifier | None


def normalize_email(email: str) -> str:
    return email.strip().lower()


async def register(session: AsyncSession, ctx: AuthContext, data: UserCreate) -> User:
    """Create an active, non-admin user; a taken email is a 409."""
    email = normalize_email(data.email)
    users = UserRepository(session)
    if await users.get_by_email(email) is not None:
        raise Conflict("An account with this email already exists.")
    user = User(
        email=email,
        hashed_password=await ctx.passwords.hash(data.password),
        full_name=data.full_name,
    )
    try:
        async with session.begin_nested():
            await users.add(user)
    except IntegrityError as exc:  # a concurrent registration won the race
        raise Conflict("An account with this email already exists.") from exc
    log.info("user_registered", user_id=user.id)
    return user


async def login(
    session: AsyncSession, ctx: AuthContext, email: str, password: str, ip: str
) -> TokenPair:
    """Check the password (same answer whether or not the email exists) and issue a pair."""
    user = await authenticate(session, ctx, email, password, ip)
    return await issue_pair(session, ctx.settings, user, family_id=str(uuid.uuid4()))


async def authenticate(
    session: AsyncSession, ctx: AuthContext, email: str, password: str, ip: str
) -> User:
    """The active user these credentials belong to, behind the failed-login throttle (429);
    the same 401 whether or not the email exists, 403 for an inactive account. The API's login
    and the dashboard's sign-in both go through here."""
    email = normalize_email(email)
    # Only a wrong password counts: a database error in here leaves no failure behind.
    async with ctx.throttle.attempt(email, ip) as attempt:
        user = await UserRepository(session).get_by_email(email)
        hashed = user.hashed_password if user else None
        valid, upgraded = await ctx.passwords.verify(password, hashed)
        if user is None or not valid:
            attempt.failed()
            log.info("login_failed", ip=ip)
            raise InvalidCredentials()
        attempt.succeeded()
    if not user.is_active:
        raise Forbidden("This account is inactive.")
    if upgraded is not None:
        user.hashed_password = upgraded
    log.info("login_succeeded", user_id=user.id)
    return user


async def issue_pair(
    session: AsyncSession, settings: Settings, user: User, *, family_id: str
) -> TokenPair:
    now = datetime.now(UTC)
    refresh, refresh_hash = tokens.new_refresh_token()
    await RefreshTokenRepository(session).add(
        RefreshToken(
            user_id=user.id,
            family_id=family_id,
            token_hash=refresh_hash,
            created_at=now,
            expires_at=now + timedelta(days=settings.REFRESH_TOKEN_EXPIRE_DAYS),
            token_version=user.token_version,
        )
    )
    return TokenPair(
        access_token=tokens.create_access_token(settings, user.id, now, version=user.token_version),
        refresh_token=refresh,
        expires_in=settings.ACCESS_TOKEN_EXPIRE_MINUTES * 60,
    )


async def refresh(session: AsyncSession, settings: Settings, refresh_token: str) -> TokenPair:
    """Rotate: revoke the presented token and issue a new pair in the same family."""
    repo = RefreshTokenRepository(session)
    now = datetime.now(UTC)
    stored = await repo.get_by_hash(tokens.hash_refresh_token(refresh_token))
    if stored is None:
        raise InvalidToken("Unknown refresh token.")
    if stored.revoked_at is not None or not await repo.revoke(stored.id, now):
        await _revoke_family_on_reuse(session, repo, stored, now)
    if stored.expires_at <= now:
        raise InvalidToken("The refresh token has expired.")
    user = await UserRepository(session).get(stored.user_id)
    if user is None or not user.is_active:
        raise Forbidden("This account is inactive.")
    if stored.token_version != user.token_version:
        raise InvalidToken(_SESSION_ENDED)
    return await issue_pair(session, settings, user, family_id=stored.family_id)


async def _revoke_family_on_reuse(
    session: AsyncSession, repo: RefreshTokenRepository, stored: RefreshToken, now: datetime
) -> None:
    # A revoked token presented again means it leaked: end every session of that login.
    # This is committed here because the 401 that follows rolls the request back.
    await repo.revoke_family(stored.family_id, now)
    await session.commit()
    log.warning("refresh_token_reuse", user_id=stored.user_id, family_id=stored.family_id)
    raise InvalidToken("This refresh token was already used; the session has been revoked.")


async def logout(session: AsyncSession, user: User, refresh_token: str) -> None:
    """Revoke the given refresh token of the current user (idempotent)."""
    repo = RefreshTokenRepository(session)
    stored = await repo.get_by_hash(tokens.hash_refresh_token(refresh_token))
    if stored is None or stored.user_id != user.id:
        raise InvalidToken("Unknown refresh token.")
    await repo.revoke(stored.id, datetime.now(UTC))


async def user_from_token(session: AsyncSession, ctx: AuthContext, token: str) -> User:
    """The active user a Bearer token stands for (ours, or Supabase's when enabled)."""
    issuer = tokens.unverified_issuer(token)
    users = UserRepository(session)
    if issuer == ctx.settings.JWT_ISSUER or ctx.supabase is None:
        claims = tokens.decode_access_token(ctx.settings, token)
        user = await users.get(claims.user_id)
        if user is not None and claims.version != user.token_version:
            raise InvalidToken(_SESSION_ENDED)
    else:
        user = await _supabase_user(session, ctx.supabase, token)
    if user is None:
        raise InvalidToken()
    if not user.is_active:
        raise Forbidden("This account is inactive.")
    return user


async def _supabase_user(session: AsyncSession, verifier: SupabaseVerifier, token: str) -> User:
    """Find the local user linked to a Supabase subject, provisioning it on first sight."""
    identity = await verifier.verify(token)
    users = UserRepository(session)
    user = await users.get_by_supabase_id(identity.subject)
    if user is not None:
        return user
    if not identity.email:
        raise InvalidToken("The Supabase token carries no email.")
    email = normalize_email(identity.email)
    try:
        async with session.begin_nested():
            user = await users.get_by_email(email)
            if user is None:
                user = await users.add(User(email=email, supabase_id=identity.subject))
                log.info("supabase_user_provisioned", user_id=user.id)
            elif user.supabase_id is None:
                if not identity.email_verified:
                    # Whoever holds the token has not proven they own this account's email.
                    raise Forbidden(
                        "An account with this email already exists; verify your email address "
                        "with the sign-in provider, then sign in again to link it."
                    )
                user.supabase_id = identity.subject
                await session.flush()
                log.info("supabase_identity_linked", user_id=user.id)
            elif user.supabase_id != identity.subject:
                raise InvalidToken("This email is linked to another Supabase account.")
            # else: a concurrent first request provisioned this very subject a moment ago.
    except IntegrityError:  # a concurrent first request provisioned it
        user = await users.get_by_supabase_id(identity.subject)
        if user is None:
            raise InvalidToken() from None
    return user
