"""API tokens: 256-bit random secrets shown once, stored only as their SHA-256.

Why SHA-256 and not a slow password hash (bcrypt, scrypt, argon2): a slow KDF protects
*guessable* secrets against offline guessing. A token here is 32 bytes from ``secrets``
(256 bits of entropy); nobody can enumerate that space whatever the hash costs, so a fast hash
loses nothing and keeps every request's check cheap. What the hash buys is that the database
(or a backup of it) does not hold a usable credential.

A token is found by its first 8 characters (``prefix``, also what lists show), then its hash is
compared in constant time, so response timing says nothing about how much of a guess matched.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, ConfigDict, field_validator
from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError

from assay.errors import AlreadyExistsError, NotFoundError, ValidationError
from assay.store import Store
from assay.store.models import ApiToken, utcnow

TOKEN_BYTES = 32
PREFIX_CHARS = 8
MAX_TOKEN_CHARS = 200  # anything longer is not one of ours; refused before hashing
TOUCH_EVERY = timedelta(minutes=1)
"""``last_used_at`` is written at most this often per token: a busy client does not turn
every read into a write."""
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,199}")
# What ``secrets.token_urlsafe`` produces; anything else is refused before any query (a NUL
# byte, say, would be a database error on Postgres rather than a refusal).
_TOKEN_SHAPE = re.compile(rf"[A-Za-z0-9_-]{{{PREFIX_CHARS},{MAX_TOKEN_CHARS}}}")


class TokenInfo(BaseModel):
    """A token as lists show it: never the secret, nor its hash."""

    model_config = ConfigDict(from_attributes=True)

    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    @field_validator("created_at", "last_used_at", "revoked_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        """SQLite hands back naive datetimes; they were stored as UTC."""
        return _aware(value) if value is not None else None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class CreatedToken(BaseModel):
    """What ``create_token`` returns: the plaintext ``token``, the only time it exists."""

    info: TokenInfo
    token: str


def hash_token(token: str) -> str:
    """Hex SHA-256 of the token: what is stored and compared."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def create_token(store: Store, name: str) -> CreatedToken:
    """A new active token named ``name``. Its plaintext is in the answer and nowhere else."""
    if not _NAME.fullmatch(name):
        raise ValidationError(
            f"token name {name[:60]!r}: use 1-200 letters, digits and . _ : @ - "
            "(starting with a letter or digit), e.g. ci or alice-laptop"
        )
    token = secrets.token_urlsafe(TOKEN_BYTES)
    row = ApiToken(name=name, token_hash=hash_token(token), prefix=token[:PREFIX_CHARS])
    try:
        with store.session() as session:
            taken = session.scalar(select(ApiToken).where(ApiToken.name == name))
            if taken is not None:
                raise _taken(name, taken)
            session.add(row)
            session.flush()
            info = TokenInfo.model_validate(row)
    except IntegrityError:  # a concurrent create with the same name won the race
        raise AlreadyExistsError(f"a token named {name!r} already exists") from None
    return CreatedToken(info=info, token=token)


def _taken(name: str, row: ApiToken) -> AlreadyExistsError:
    if row.revoked_at is None:
        return AlreadyExistsError(
            f"a token named {name!r} already exists; revoke it first "
            f"(`assay token revoke {name}`) or choose another name"
        )
    return AlreadyExistsError(
        f"a token named {name!r} existed and was revoked; names are not reused, so every "
        "name in `assay token list` means one token: choose another name"
    )


def list_tokens(store: Store) -> list[TokenInfo]:
    """Every token, active and revoked, oldest first."""
    with store.session() as session:
        rows = session.scalars(select(ApiToken).order_by(ApiToken.id))
        return [TokenInfo.model_validate(row) for row in rows]


def revoke_token(store: Store, name: str) -> TokenInfo:
    """Revoke a token now: the next request that carries it is refused."""
    with store.session() as session:
        row = session.scalar(select(ApiToken).where(ApiToken.name == name))
        if row is None:
            raise NotFoundError(f"no token named {name!r}; see `assay token list`")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
        session.flush()
        return TokenInfo.model_validate(row)


def auth_configured(store: Store) -> bool:
    """True once at least one active token exists: from then on the web app requires one."""
    with store.session() as session:
        query = select(exists().where(ApiToken.revoked_at.is_(None)))
        return bool(session.scalar(query))


def verify_token(store: Store, token: str) -> TokenInfo | None:
    """The active token ``token`` is, or None. Records the use (at most once a minute)."""
    if not _TOKEN_SHAPE.fullmatch(token):
        return None
    digest = hash_token(token)
    with store.session() as session:
        candidates = session.scalars(
            select(ApiToken).where(
                ApiToken.prefix == token[:PREFIX_CHARS], ApiToken.revoked_at.is_(None)
            )
        ).all()
        match = None
        for row in candidates:  # compare with every candidate: no early exit on a match
            if hmac.compare_digest(row.token_hash, digest):
                match = row
        if match is None:
            return None
        now = utcnow()
        if match.last_used_at is None or now - _aware(match.last_used_at) >= TOUCH_EVERY:
            match.last_used_at = now
        session.flush()
        return TokenInfo.model_validate(match)


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
