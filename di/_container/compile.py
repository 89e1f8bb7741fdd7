"""Compiling a transient, or a request scope's scoped service, into one Python function.

``invoke(Service)`` for a transient ``Service(repo: Repo, config: Config)`` whose ``Repo``
is transient too becomes a call of ``lambda S: Service(Repo(db), config)``, with ``db`` and
``config`` (singletons) captured as built. That is as fast as writing the construction
by hand, plus one lookup. Scopes drop their compiled builders whenever a provider
changes or a singleton is released, so a captured instance is never stale.

Only plain sync factories are compiled; anything else (async or generator factories,
cycles, named transients that need a type check, collections) returns None and takes
the general path, which also raises the proper errors.

When a hook listens to build events from the scope (see :mod:`di._container.hooks`),
a transient's builder is compiled with the calls that tell it (:func:`_hooked_step`),
and a scoped service takes the general path, which tells them too; with no such hook
the code is the same as if hooks did not exist.

The generated source is registered in :mod:`linecache` under its own file name
(``<di scoped app.Handler>``), so a traceback through a builder shows the line that
failed. Generated code names no private of the scope: what it calls back is handed to
it as constants (see :data:`di._container.request.CALLBACKS`).
"""

from __future__ import annotations

import hashlib
import inspect
import linecache
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import DIError
from . import hooks, registry
from .resolve import check_type, first_anext, params_of, resolve_sync
from .runner import after_fork_in_child
from .service import COMPILED, Lifetime, Service
from .signature import Kind, Param, ScopeParam

if TYPE_CHECKING:
    from ..scope import Scope

_EMPTY = inspect.Parameter.empty
# Deeper chains take the general path: compiling recurses once per service, and
# Python's parser refuses expressions nested a few hundred deep.
_DEEPEST = 24


class _Source:
    """The constants a generated function closes over, each under a name that says what
    it is (``Handler_3``, ``key_4``), so that a traceback through it reads."""

    def __init__(self) -> None:
        self.constants: list[Any] = []
        self.names: list[str] = []

    def constant(self, value: Any, what: str = "") -> str:
        if not what:
            what = getattr(value, "__name__", "") if callable(value) else ""
        what = "".join(c if c.isalnum() else "_" for c in what)[:40] or "c"
        name = f"{what}_{len(self.constants)}"
        self.constants.append(value)
        self.names.append(name)
        return name

    def parameters(self) -> str:
        return ", ".join(self.names)


def compile_transient(scope: Scope, service: Service) -> Callable[[Scope], Any] | None:
    """A function building ``service`` as ``scope`` would, or None.

    It takes the invoking scope (unused: it captured ``scope``), as every builder kept
    in ``Scope._compiled`` does.
    """
    if hooks.listens(scope, hooks.BUILD_EVENTS):
        return _compile_hooked(scope, service)
    source = _Source()
    try:
        expression = _expression(scope, service, source, ())
    except TypeError:
        return None  # e.g. an unresolvable annotation: the general path reports it
    if expression is None:
        return None
    names = source.parameters()
    code = (
        f"def _outer({names}):\n    def build(S):\n        return {expression}\n    return build\n"
    )
    return _define(code, f"transient {service.label}", *source.constants)


def _define(code: str, what: str, *constants: Any) -> Callable[[Scope], Any]:
    """Compile ``code`` (which defines ``_outer``) under a file name of its own, registered
    in :mod:`linecache` so that tracebacks show its lines; ``_outer(*constants)``.

    The name is derived from the text, so compiling the same builder again (a provider
    changed, then changed back) shares the entry instead of adding one. The entry stays
    while code compiled under that name lives (a builder, or a traceback through one),
    and goes at a later compile once none does: scopes drop builders whenever a
    provider changes, and the cache must not keep every text ever compiled.
    """
    digest = hashlib.blake2s(code.encode(), digest_size=4).hexdigest()
    filename = f"<di {what} {digest}>"
    namespace: dict[str, Any] = {}
    exec(compile(code, filename, "exec"), namespace)
    builder: Callable[[Scope], Any] = namespace["_outer"](*constants)
    with _LINES.lock:
        _LINES.settle()
        _LINES.live[filename] = _LINES.live.get(filename, 0) + 1
        # Set even if present: linecache.clearcache() may have dropped it meanwhile.
        linecache.cache[filename] = (len(code), None, code.splitlines(keepends=True), filename)
    # On the builder's code rather than the builder: a traceback keeps the code alive.
    weakref.finalize(builder.__code__, _LINES.gone.append, filename).atexit = False
    return builder


class _Lines:
    """How many live builders' code each generated file name has in :mod:`linecache`."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.live: dict[str, int] = {}
        # Names whose code was collected, settled at the next compile: a finalizer may
        # run in any thread, in the middle of anything, so it only appends.
        self.gone: list[str] = []
        after_fork_in_child(self._after_fork)

    def _after_fork(self) -> None:
        """In a forked child: a thread of the parent compiling at the fork held the lock."""
        self.lock = threading.Lock()

    def settle(self) -> None:
        """Drop the entries no live code is compiled under (the caller holds the lock)."""
        while self.gone:
            filename = self.gone.pop()
            left = self.live.get(filename, 1) - 1
            if left > 0:
                self.live[filename] = left
            else:
                self.live.pop(filename, None)
                linecache.cache.pop(filename, None)


_LINES = _Lines()


def _expression(
    scope: Scope, service: Service, source: _Source, path: tuple[Service, ...]
) -> str | None:
    if service in path or service.kind is not Kind.PLAIN or len(path) > _DEEPEST:
        return None
    arguments = []
    for p in params_of(service):
        if p.target is ScopeParam:
            value = source.constant(scope, "scope")
        else:
            dependency = registry.lookup(scope, p.target)
            if dependency is not None and dependency.lifetime is Lifetime.COLLECTION:
                return None  # gathered anew on every build
            if dependency is not None and dependency.lifetime is Lifetime.TRANSIENT:
                if isinstance(p.target, str):
                    return None  # its type is checked on every build
                inner = _expression(scope, dependency, source, (*path, service))
                if inner is None:
                    return None
                value = inner
            else:
                captured = _captured(scope, p, dependency, source)
                if captured is None:
                    return None
                value = captured
        arguments.append(value if p.positional else f"{p.name}={value}")
    return f"{source.constant(service.factory)}({', '.join(arguments)})"


def _captured(scope: Scope, p: Param, dependency: Service | None, source: _Source) -> str | None:
    """A parameter's default (no dependency) or its singleton, built now, as a constant.

    None when the dependency is absent and the parameter has no default.
    """
    if dependency is None:
        return None if p.default is _EMPTY else source.constant(p.default, f"default_{p.name}")
    instance = resolve_sync(dependency, scope)
    if isinstance(p.target, str):
        check_type(p.target, instance, p.expected, f"parameter {p.name!r}")
    return source.constant(instance, p.name)


def _compile_hooked(scope: Scope, service: Service) -> Callable[[Scope], Any] | None:
    """:func:`compile_transient` for a scope some hook listens to build events from."""
    source = _Source()
    lines: list[str] = []
    try:
        result = _hooked_step(scope, service, source, lines, (), 2)
    except TypeError:
        return None
    if result is None:
        return None
    code = (
        f"def _outer({source.parameters()}):\n"
        "    def build(S):\n"
        + "".join(f"{line}\n" for line in lines)
        + f"        return {result}\n"
        "    return build\n"
    )
    return _define(code, f"transient {service.label} with hooks", *source.constants)


def _hooked_step(
    scope: Scope,
    service: Service,
    source: _Source,
    lines: list[str],
    path: tuple[Service, ...],
    depth: int,
) -> str | None:
    """Add the lines building transient ``service`` as the general path does, telling
    the hooks: ``building``, its transient dependencies, its factory, then ``built``
    (or ``build_failed``) with the seconds it took, dependencies included.

    Returns the local variable holding the instance, or None for the general path.
    """
    if service in path or service.kind is not Kind.PLAIN or len(path) > _DEEPEST:
        return None
    listening = scope._listeners
    pad = "    " * depth
    number = len(source.constants)
    instance, began = f"v{number}", f"t{number}"
    declared = source.constant(service, "declared")
    tell = source.constant(hooks.deliver, "tell")
    clock = source.constant(time.perf_counter, "clock")

    def told(event: str, value: str, error: str) -> str:
        listeners = source.constant(listening[event], f"{event}_hooks")
        duration = "None" if event == "building" else f"{clock}() - {began}"
        return f'{tell}(S, {listeners}, "{event}", {declared}, {value}, {error}, {duration})'

    if "building" in listening:
        lines.append(pad + told("building", "None", "None"))
    lines.append(f"{pad}{began} = {clock}()")
    failing = "build_failed" in listening
    body: list[str] = []
    inner_depth = depth + 1 if failing else depth
    arguments = []
    for p in params_of(service):
        if p.target is ScopeParam:
            value = source.constant(scope, "scope")
        else:
            dependency = registry.lookup(scope, p.target)
            if dependency is not None and dependency.lifetime is Lifetime.COLLECTION:
                return None
            if dependency is not None and dependency.lifetime is Lifetime.TRANSIENT:
                if isinstance(p.target, str):
                    return None
                inner = _hooked_step(scope, dependency, source, body, (*path, service), inner_depth)
                if inner is None:
                    return None
                value = inner
            else:
                captured = _captured(scope, p, dependency, source)
                if captured is None:
                    return None
                value = captured
        arguments.append(value if p.positional else f"{p.name}={value}")
    inner_pad = "    " * inner_depth
    body.append(
        f"{inner_pad}{instance} = {source.constant(service.factory)}({', '.join(arguments)})"
    )
    if failing:
        lines.append(f"{pad}try:")
        lines += body
        lines.append(f"{pad}except BaseException as error:")
        lines.append(f"{pad}    " + told("build_failed", "None", "error"))
        lines.append(f"{pad}    raise")
    else:
        lines += body
    if "built" in listening:
        lines.append(pad + told("built", instance, "None"))
    return instance


# -- scoped services ------------------------------------------------------------------


def compile_scoped(
    parent: Scope,
    service: Service,
    callbacks: Mapping[str, Callable[..., Any]],
    asynchronous: bool = False,
) -> Callable[[Scope], Any] | None:
    """A function building scoped ``service`` in a child of ``parent`` that provides nothing.

    Such a child (a request scope) resolves every key as ``parent`` does, so one builder
    serves every request: it reads the child's context, captures the singletons (built
    now), and builds the scoped services on the way in dependency order, each looked
    for in the child first and cached there. ``Scope.invoke`` calls it once it saw the
    child without the instance.

    ``callbacks`` are what it calls back, by the names of
    :data:`di._container.request.CALLBACKS`: ``_enter`` hands it the child's instances
    and its list of compiled builds (None from another thread than the child's own:
    then ``_guarded`` takes the general path, so that two threads never both build
    one); ``_record`` caches what it built, ``_refuse`` undoes a build that landed in a
    scope closed meanwhile, ``_failed`` names a factory that raised, and ``_context``
    reads a context value from an enclosing scope.

    A generator factory's generator is recorded with its instance, for the scope's
    close to finish (see :func:`di._container.inline.run_inline`). With
    ``asynchronous`` the builder is an ``async def`` (for ``ainvoke``): async factories
    and async generator factories are awaited too, and a build from another thread
    awaits the general async path (``_aguarded``).

    Returns None when anything on the way needs the general path (async factories
    without ``asynchronous``, ``shutdown=`` hooks, transients, named services needing
    a type check, cycles).
    """
    if hooks.listens(parent, hooks.BUILD_EVENTS):
        return None  # the general path tells the hooks
    source = _Source()
    lines: list[str] = []
    try:
        result = _scoped_step(parent, service, source, {}, lines, (), asynchronous)
    except (TypeError, DIError):
        return None
    if result is None:
        return None
    names = source.parameters()
    body = "\n".join(f"        {line}" for line in lines)
    define, guarded = ("async def", "await _aguarded") if asynchronous else ("def", "_guarded")
    code = (
        f"def _outer(_C, _D, {', '.join(callbacks)}, {names}):\n"
        f"    {define} build(S):\n"
        "        e = _enter(S)\n"
        "        if e is None:\n"
        f"            return {guarded}(S, _D)\n"
        "        i, f = e\n"
        f"{body}\n"
        f"        return {result}\n"
        "    return build\n"
    )
    what = f"{'async ' if asynchronous else ''}scoped {service.label}"
    return _define(code, what, COMPILED, service, *callbacks.values(), *source.constants)


def _scoped_step(
    parent: Scope,
    service: Service,
    source: _Source,
    built: dict[Service, str],
    lines: list[str],
    path: tuple[Service, ...],
    asynchronous: bool,
) -> str | None:
    """Add the lines building scoped ``service`` (after its scoped dependencies).

    Returns the local variable holding the instance, or None when it needs the general
    path. The service asked for (``path`` empty) is built outright; each dependency is
    looked for in the scope first.
    """
    if service in built:
        return built[service]
    kind = service.kind
    if service in path or service.shutdown_hook is not None:
        return None  # a shutdown= hook: the scope's general shutdown runs it
    if kind not in (Kind.PLAIN, Kind.GENERATOR) and not asynchronous:
        return None  # awaited: only an async builder builds it
    if len(path) > _DEEPEST:
        return None
    arguments: list[str] = []
    for p in params_of(service):
        if p.target is ScopeParam:
            value = "S"
        else:
            dependency = registry.lookup(parent, p.target)
            if dependency is None or dependency.lifetime in (Lifetime.LAZY, Lifetime.VALUE):
                captured = _captured(parent, p, dependency, source)
                if captured is None:
                    return None
                value = captured
            elif dependency.lifetime is Lifetime.SCOPED:
                if isinstance(p.target, str):
                    return None  # its type is checked on every build
                inner = _scoped_step(
                    parent, dependency, source, built, lines, (*path, service), asynchronous
                )
                if inner is None:
                    return None
                value = inner
            elif dependency.lifetime is Lifetime.CONTEXT:
                if p.default is not _EMPTY:
                    return None  # its default when absent: the general path decides
                # The scope's context values are in its instances too, by their keys
                # (which nothing else there uses); an ancestor's, the general lookup.
                key = source.constant(dependency.key, "key")
                declared = source.constant(dependency, "declared")
                held = f"c{len(source.constants)}"
                value = (
                    f"({held} if ({held} := i.get({key}, _C)) is not _C "
                    f"else _context(S, {declared}))"
                )
            else:
                return None  # a transient
        arguments.append(value if p.positional else f"{p.name}={value}")
    v = built[service] = f"v{len(built)}"
    factory = source.constant(service.factory)
    declared = source.constant(service, "declared")
    key = source.constant(service.key, "key")
    call = f"{factory}({', '.join(arguments)})"
    # A generator factory's generator, kept with the instance for the close.
    g = f"g{len(built)}" if kind in (Kind.GENERATOR, Kind.ASYNC_GENERATOR) else "None"
    if kind is Kind.GENERATOR:
        made = [f"    {g} = {call}", f"    {v} = next({g})"]
    elif kind is Kind.ASYNC_GENERATOR:
        first = source.constant(first_anext, "first_anext")
        made = [f"    {g} = {call}", f"    {v} = await {first}({g})"]
    elif kind is Kind.ASYNC:
        made = [f"    {v} = await {call}"]
    else:
        made = [f"    {v} = {call}"]
    step = [
        "try:",
        *made,
        "except Exception as error:",
        f"    _failed(S, error, {declared})",
        "    raise",
    ]
    if len(service.keys) > 1 or service.key is not service.expected:
        step.append(f"{v} = _record(S, {declared}, {v}, {g})")  # bound keys: checked
    else:
        # request.record, inlined for the common case: one key, its own type.
        counter = source.constant(parent.root._counter.__next__, "build_number")
        step += [
            f"if i.get({key}, _C) is not _C:",  # another thread won: its instance
            f"    {v} = _record(S, {declared}, {v}, {g})",
            "else:",
            f"    i[{key}] = {v}",
            f"    f.append(({declared}, {v}, {counter}(), {g}))",
            "    if S.closed:",
            f"        _refuse(S, {declared}, {v}, {g})",
        ]
    if path:  # a dependency: built only if the scope has none yet
        lines += [f"{v} = i.get({key}, _C)", f"if {v} is _C:"]
        lines += [f"    {line}" for line in step]
    else:
        lines += step
    return v
