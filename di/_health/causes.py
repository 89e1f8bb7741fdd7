"""Root causes: which failed checks are only the echo of a dependency's failure.

The container records, as each service is built, the services its factory's
parameters reached (``Service.needs``). After a call, :func:`with_causes` gives each
failed result the failed services it depends on (``blocked_by``), directly or through
services that were not checked in the call; a failed result with none is a root cause
(``HealthReport.root_causes``). :func:`levels` orders the checks of services whose
policy says ``skip_when_blocked`` after the checks they depend on, so that the engine
can leave them unrun when one of those failed (:func:`blocked`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import TYPE_CHECKING

from .._container.service import Lifetime, Service
from ..errors import HealthCheckError
from ..health import HealthCheckResult, Outcome

if TYPE_CHECKING:
    from .engine import Item


def checked_dependencies(service: Service, checked: Collection[Service]) -> list[Service]:
    """The services in ``checked`` that ``service`` depends on, directly or through
    services not in ``checked``, each once, nearest first."""
    found: list[Service] = []
    seen = {service}
    stack = list(_needs(service))
    stack.reverse()
    while stack:
        dependency = stack.pop()
        if dependency in seen:
            continue
        seen.add(dependency)
        if dependency in checked:
            found.append(dependency)
        else:  # no check of its own here: what it needs is what this one needs
            following = list(_needs(dependency))
            following.reverse()
            stack.extend(following)
    return found


def _needs(service: Service) -> Iterable[Service]:
    if service.lifetime is Lifetime.COLLECTION:
        return service.members
    template = service.template  # a scoped copy records its own builds
    return service.needs if service.needs or template is None else template.needs


def with_causes(
    items: list[Item], results: Mapping[int, HealthCheckResult]
) -> dict[int, HealthCheckResult]:
    """``results`` (by item position) with each failed one's ``blocked_by`` filled in."""
    by_service = {item.service: results[item.position] for item in items}
    updated = dict(results)
    for item in items:
        result = results[item.position]
        if result.healthy or result.blocked_by:
            continue
        blocked_by = tuple(
            dependency.label
            for dependency in checked_dependencies(item.service, by_service)
            if not by_service[dependency].healthy
        )
        if blocked_by:
            updated[item.position] = with_blocked_by(result, blocked_by)
    return updated


def with_blocked_by(result: HealthCheckResult, blocked_by: tuple[str, ...]) -> HealthCheckResult:
    """``result`` naming ``blocked_by`` as the failed dependencies it failed with."""
    return HealthCheckResult(
        result.key,
        result.scope,
        result.outcome,
        result.error,
        result.started_at,
        result.duration,
        result.details,
        blocked_by,
    )


def levels(items: list[Item]) -> list[list[Item]]:
    """The items in rounds: a check whose policy says ``skip_when_blocked`` comes after
    every check it depends on; the rest come first. One round when none says so."""
    skipping = [
        item for item in items if item.service.policy and item.service.policy.skip_when_blocked
    ]
    if not skipping:
        return [items]
    by_service = {item.service: item for item in items}
    level: dict[Service, int] = {}

    def level_of(item: Item, path: frozenset[Service]) -> int:
        service = item.service
        known = level.get(service)
        if known is not None:
            return known
        if not item.policy.skip_when_blocked:
            level[service] = 0
            return 0
        deepest = -1
        for dependency in checked_dependencies(service, by_service):
            if dependency not in path:  # a cycle: leave it to the first
                deepest = max(deepest, level_of(by_service[dependency], path | {service}))
        level[service] = deepest + 1
        return deepest + 1

    rounds: list[list[Item]] = []
    for item in items:
        depth = level_of(item, frozenset())
        while len(rounds) <= depth:
            rounds.append([])
        rounds[depth].append(item)
    return [round_ for round_ in rounds if round_]


def blocked(
    item: Item, done: Mapping[Service, HealthCheckResult], started_at: float
) -> HealthCheckResult | None:
    """The result of ``item`` left unrun because a dependency failed in ``done``; None
    when none did."""
    failed = tuple(
        dependency.label
        for dependency in checked_dependencies(item.service, done)
        if not done[dependency].healthy
    )
    if not failed:
        return None
    service = item.service
    error = HealthCheckError(service.label, f"not run: blocked by {', '.join(failed)}")
    outcome = Outcome.UNHEALTHY if service.critical else Outcome.DEGRADED
    return HealthCheckResult(
        service.label, item.scope, outcome, error, started_at, 0.0, None, failed
    )
