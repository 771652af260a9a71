"""API keys and roles.

A key belongs to one workspace and has one role. What a role may do:

==========  =============================================================================
``viewer``  read everything in its workspace; call ``predict`` (a camera gets a viewer key)
``labeler`` the viewer's rights, plus upload images, edit annotations and work the queue
``admin``   everything: create and delete projects, versions, models, deploys, keys
==========  =============================================================================

A key is ``wn_`` plus 43 URL-safe characters (256 random bits); only its SHA-256 is stored. A
fast hash is enough here: the secret is random and long, so there is no dictionary to try (the
same reasoning as GitHub's and Stripe's tokens).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import select

from winnow.errors import InvalidInputError, NotFoundError
from winnow.services.projects import get_workspace
from winnow.store import models as m
from winnow.store.db import Store
from winnow.store.models import utcnow

ROLES = ("viewer", "labeler", "admin")
#: What each role may do; a request names the one permission it needs.
PERMISSIONS: dict[str, frozenset[str]] = {
    "viewer": frozenset({"read", "predict"}),
    "labeler": frozenset({"read", "predict", "label", "upload"}),
    "admin": frozenset({"read", "predict", "label", "upload", "manage", "delete"}),
}
_PREFIX = "wn_"
_SHOWN = 10  # characters of the key kept in clear, to tell keys apart


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's id and name, its workspace and its role."""

    key_id: int
    name: str
    workspace: str
    workspace_id: int
    role: str

    @property
    def user(self) -> str:
        """What ``created_by`` columns record for this caller."""
        return f"key:{self.name}"

    def can(self, permission: str) -> bool:
        return permission in PERMISSIONS[self.role]


@dataclass
class KeySummary:
    """Field names are part of the ``winnow key --json`` contract. ``key`` is only set once, when
    the key is created: it cannot be shown again."""

    id: int
    name: str
    workspace: str
    role: str
    prefix: str
    created_at: str
    revoked: bool
    key: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _summary(row: m.ApiKey, workspace: str, key: str | None = None) -> KeySummary:
    return KeySummary(row.id, row.name, workspace, row.role, row.prefix, row.created_at.isoformat() + "Z", row.revoked_at is not None, key)


def create_key(store: Store, workspace: str, role: str, *, name: str | None = None, user: str | None = None) -> KeySummary:
    """A new key for ``workspace`` (created when it does not exist yet) with ``role``."""
    if role not in ROLES:
        raise InvalidInputError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    key = _PREFIX + secrets.token_urlsafe(32)
    with store.write() as session:
        ws = get_workspace(session, workspace, create=True)
        row = m.ApiKey(
            workspace_id=ws.id, name=(name or f"{role}-{key[len(_PREFIX):len(_PREFIX) + 6]}")[:200], role=role,
            prefix=key[:_SHOWN], key_hash=hash_key(key), created_by=user,
        )
        session.add(row)
        session.flush()
        return _summary(row, ws.name, key)


def list_keys(store: Store, workspace: str | None = None) -> list[KeySummary]:
    with store.read() as session:
        q = select(m.ApiKey, m.Workspace.name).join(m.Workspace).order_by(m.Workspace.name, m.ApiKey.id)
        if workspace is not None:
            q = q.where(m.Workspace.name == workspace)
        return [_summary(row, ws) for row, ws in session.execute(q).all()]


def revoke_key(store: Store, ref: str) -> KeySummary:
    """Revoke the key whose id, name or shown prefix is ``ref`` (it must name exactly one)."""
    with store.write() as session:
        q = select(m.ApiKey, m.Workspace.name).join(m.Workspace)
        cond = (m.ApiKey.name == ref) | (m.ApiKey.prefix == ref)
        if ref.isdigit():
            cond = cond | (m.ApiKey.id == int(ref))
        rows = session.execute(q.where(cond)).all()
        if not rows:
            raise NotFoundError(f"no API key {ref!r}")
        if len(rows) > 1:
            raise InvalidInputError(f"{ref!r} names {len(rows)} keys; use the key's id")
        row, ws = rows[0]
        if row.revoked_at is None:
            row.revoked_at = utcnow()
        return _summary(row, ws)


def authenticate(store: Store, key: str | None) -> Principal | None:
    """The caller a presented key stands for; ``None`` for a missing, unknown or revoked key."""
    if not key or not key.startswith(_PREFIX) or len(key) > 200:
        return None
    digest = hash_key(key)
    with store.read() as session:
        found = session.execute(
            select(m.ApiKey.id, m.ApiKey.name, m.Workspace.name, m.ApiKey.workspace_id, m.ApiKey.role, m.ApiKey.key_hash, m.ApiKey.revoked_at)
            .join(m.Workspace)
            .where(m.ApiKey.key_hash == digest)
        ).first()
    if found is None:
        return None
    key_id, name, ws, ws_id, role, stored, revoked = found
    if revoked is not None or not hmac.compare_digest(stored, digest):
        return None
    return Principal(key_id, name, ws, ws_id, role)
