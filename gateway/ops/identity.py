"""Who the request runs as."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from gateway.answers import built
from gateway.registry import quick
from gateway.runtime import Runtime


class User(BaseModel):
    id: str | None
    user_name: str | None
    display_name: str | None
    emails: list[str]
    active: bool | None
    groups: list[str]


@quick
async def me(runtime: Runtime) -> User:
    """The user or service principal the request runs as (SCIM Me), asked afresh each time."""
    user = await runtime.upstream.me()
    return built(
        User,
        id=user.id,
        user_name=user.user_name,
        display_name=user.display_name,
        emails=[e.value for e in user.emails or [] if e.value],
        active=user.active,
        groups=[g.display for g in user.groups or [] if g.display],
    )


# The ops of this family the gateway serves (gateway/ops/__init__.py gathers every family's).
OPS: list[Callable[..., Any]] = [me]
