"""What every endpoint depends on: the store, the caller (from the API key) and its rights.

A key is sent as ``Authorization: Bearer wn_...`` or ``X-API-Key: wn_...``. Without a valid key
every endpoint but ``/api/v1/health`` answers 401. A project is always looked up inside the key's
workspace, so another workspace's project is 404, exactly like one that does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Depends, Header, Request

from winnow.api.limits import Limits, RateLimiter
from winnow.errors import PermissionDeniedError, WinnowError
from winnow.services.auth import Principal, authenticate
from winnow.store.db import Store


class Unauthenticated(WinnowError):
    """No key, or a key that is unknown or revoked."""


@dataclass
class Context:
    """One request's store and caller."""

    store: Store
    principal: Principal
    limits: Limits
    limiter: RateLimiter
    state: object  # app.state: services that live as long as the server (the inference pool)

    @property
    def workspace(self) -> str:
        return self.principal.workspace

    @property
    def user(self) -> str:
        return self.principal.user

    def rate(self, kind: str) -> None:
        self.limiter.take(self.principal.key_id, kind)

    def project(self, name: str) -> tuple[int, str]:
        """``(id, name as stored)`` of the caller's workspace's project ``name``; 404 otherwise."""
        from winnow.services.projects import get_project

        with self.store.read() as session:
            row = get_project(session, name, self.workspace)
            return row.id, row.name


def _key(authorization: str | None, x_api_key: str | None) -> str | None:
    if x_api_key:
        return x_api_key.strip()
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer":
            return token.strip()
    return None


def context(
    request: Request,
    authorization: str | None = Header(default=None),
    x_api_key: str | None = Header(default=None),
) -> Context:
    principal = authenticate(request.app.state.store, _key(authorization, x_api_key))
    if principal is None:
        raise Unauthenticated("a valid API key is required (Authorization: Bearer <key> or X-API-Key)")
    state = request.app.state
    return Context(state.store, principal, state.limits, state.limiter, state)


def require(permission: str):
    """A dependency that gives the :class:`Context` when the caller's role has ``permission``."""

    def dependency(ctx: Context = Depends(context)) -> Context:
        if not ctx.principal.can(permission):
            raise PermissionDeniedError(f"a {ctx.principal.role} key cannot {permission}; ask an admin of workspace {ctx.workspace!r}")
        return ctx

    dependency.__name__ = f"require_{permission}"
    return dependency


Read = Depends(require("read"))
Label = Depends(require("label"))
Upload = Depends(require("upload"))
Manage = Depends(require("manage"))
Delete = Depends(require("delete"))
Predict = Depends(require("predict"))
