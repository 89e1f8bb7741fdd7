"""A monitor's groups: the members given to ``HealthMonitor(groups=...)``, resolved.

A group lists services by type or name (a key as ``invoke`` takes it, or the name the
monitor reports a service by), by tag (``"tag:db"``: every service provided with that
tag), or ``"*"`` for every checked service. Each is resolved once, when the group is
made: an unknown member, or a tag no service has, is an error then, not a group that
can never be SERVING.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .._container import views
from .snapshot import LIVENESS, STARTUP

if TYPE_CHECKING:
    from ..scope import Scope

DEFAULT_GROUPS: Mapping[str, Sequence[Any]] = {LIVENESS: [], "readiness": ["*"]}
TAG = "tag:"


def resolve(
    scope: Scope, groups: object, where: str = "HealthMonitor(groups=...)"
) -> dict[str, tuple[str, ...] | None]:
    """The default groups with ``groups`` added over them, each resolved (see
    :func:`members`)."""
    if groups is not None and not isinstance(groups, Mapping):
        raise TypeError(
            f"{where} must be a mapping of group name to members, "
            f"such as groups={{'db': [Database, 'replica']}}; got {groups!r}"
        )
    if groups and STARTUP in groups:
        raise ValueError(
            f"{where}: {STARTUP!r} is the startup probe's name (SERVING once the start "
            "completed); give the group another name"
        )
    return {
        name: members(scope, name, listed, where)
        for name, listed in {**DEFAULT_GROUPS, **(groups or {})}.items()
    }


def members(
    scope: Scope, group: str, listed: object, where: str = "HealthMonitor(groups=...)"
) -> tuple[str, ...] | None:
    """The labels of a group's members, in order; None for ``"*"`` (every checked service)."""
    if isinstance(listed, str) or not isinstance(listed, Sequence | set | frozenset):
        raise TypeError(
            f"{where}: group {group!r} must list its members, such as "
            f"groups={{{group!r}: [Database, 'replica', 'tag:db']}}; got {listed!r}"
        )
    if "*" in listed:
        return None
    found: list[Any] = []
    for member in listed:
        if isinstance(member, str) and member.startswith(TAG):
            tagged = views.tagged(scope, member[len(TAG) :])
            if not tagged:
                raise ValueError(
                    f"{where}: group {group!r} lists {member!r}, but no service in reach "
                    f"has the tag {member[len(TAG) :]!r}; provide one with "
                    f"tags=({member[len(TAG) :]!r},) or remove the member"
                )
            found += [service for service in tagged if service not in found]
        else:
            # An unknown member fails now, not as a group that can never be SERVING.
            service = views.find(scope, member)
            if service not in found:
                found.append(service)
    # A service's own name must not pass for a group that does not answer for it.
    shadowed = views.lookup(scope, group)
    if shadowed is not None and shadowed not in found:
        raise ValueError(
            f"{where}: group {group!r} has the name of a service it "
            "does not list; rename the group or the service, so that each name has one "
            "status"
        )
    return tuple(service.label for service in found)
