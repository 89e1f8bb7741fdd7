"""The API reference (docs/reference.md) as the site renders it: readable, and complete.

Two parts, both named in mkdocs.yml, so that ``make docs`` (``mkdocs build --strict``)
applies them:

- :class:`Docstrings`, a Griffe extension mkdocstrings loads: the docstrings are
  written for Python's ``help()`` as much as for the site, so it renders the reST roles
  they use (``:class:`~di.HealthMonitor```) as code (``HealthMonitor``), and each run of
  doctest lines (``>>>``, ``...`` and their output) as a Python code block rather than a
  paragraph that runs them together.
- The mkdocs hook :func:`on_post_page`: once the reference page is rendered, every
  public name (:func:`public_names`: each name a public module lists in ``__all__``)
  must have its entry there, or the build fails naming what is missing and where to
  add it.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from typing import Any

import griffe

# `:class:`~di.HealthMonitor``, `:meth:`start``, `:py:func:`x``: a role, its target.
ROLE = re.compile(r":(?:py:)?(?:class|meth|func|data|mod|attr|exc|obj|const):`([^`]+)`")
DOCTEST = re.compile(r"^(\s*)(>>>|\.\.\.)( |$)")


def _role_as_code(match: re.Match[str]) -> str:
    """``~a.b.C`` is ``C``; ``.C`` is ``C``; ``a.b.C`` stays whole: Sphinx's reading."""
    target = match.group(1).strip()
    if target.startswith("~"):
        target = target[1:].rpartition(".")[2]
    return f"`{target.lstrip('.')}`"


def _fence_doctests(text: str) -> str:
    """Each run of doctest lines, with the output lines that follow it, fenced."""
    lines = text.splitlines()
    out: list[str] = []
    index = 0
    while index < len(lines):
        found = DOCTEST.match(lines[index])
        if found is None:
            out.append(lines[index])
            index += 1
            continue
        indent = found.group(1)
        out.append(f"{indent}```python")
        while index < len(lines) and lines[index].strip() and lines[index].startswith(indent):
            out.append(lines[index])
            index += 1
        out.append(f"{indent}```")
    return "\n".join(out)


def rendered(docstring: str) -> str:
    """A docstring as the reference shows it: roles as code, doctests as code blocks."""
    return _fence_doctests(ROLE.sub(_role_as_code, docstring))


class Docstrings(griffe.Extension):
    """Rewrites each loaded docstring with :func:`rendered` (see the module docstring)."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rendered(obj.docstring.value)


# -- every public name has its entry -------------------------------------------------------


def public_modules() -> list[str]:
    """``di`` and each module under it with no part of its path private (``_x``)."""
    package = importlib.import_module("di")
    found = ["di"]
    for module in pkgutil.walk_packages(package.__path__, "di."):
        if not any(part.startswith("_") for part in module.name.split(".")):
            found.append(module.name)
    return sorted(found)


def _configure_django() -> None:
    """Importing di.integrations.django reads Django's settings: bare ones will do."""
    try:
        from django.conf import settings
    except ImportError:
        return
    if not settings.configured:
        settings.configure()


def public_names() -> dict[str, list[str]]:
    """Each public module's ``__all__``, by module; without one, the public classes and
    functions it defines."""
    _configure_django()
    names: dict[str, list[str]] = {}
    for name in public_modules():
        module = importlib.import_module(name)
        listed = getattr(module, "__all__", None)
        if listed is None:
            listed = [
                key
                for key, value in vars(module).items()
                if not key.startswith("_")
                and (inspect.isclass(value) or inspect.isfunction(value))
                and value.__module__ == name
            ]
        names[name] = list(listed)
    return names


def entries(html: str) -> set[str]:
    """The anchors of the reference page: one per rendered object (``di.monitor.X``)."""
    return set(re.findall(r'id="(di(?:\.[\w]+)+)"', html))


def missing(html: str) -> list[str]:
    """The public names with no entry in the reference page ``html``.

    A name has its entry under the module that lists it, or under another module that
    holds the same object by the same name (``di.HealthMonitor`` is rendered as
    ``di.monitor.HealthMonitor``). A public module without ``__all__`` needs its own.
    """
    anchors = entries(html)
    rendered_objects = {}
    for anchor in anchors:
        module, _, name = anchor.rpartition(".")
        try:
            rendered_objects[anchor] = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue  # a method or attribute of a class: not a module's name
    absent = []
    for module, names in public_names().items():
        loaded = importlib.import_module(module)
        if not names and module not in anchors:
            absent.append(module)
        for name in names:
            value = getattr(loaded, name)
            same = any(
                anchor.endswith(f".{name}") and found is value
                for anchor, found in rendered_objects.items()
            )
            if f"{module}.{name}" not in anchors and not same:
                absent.append(f"{module}.{name}")
    return sorted(absent)


def on_post_page(output: str, *, page: Any, config: Any) -> str:
    """Fail the build when the reference page lacks a public name (mkdocs hook)."""
    if page.file.src_uri == "reference.md":
        absent = missing(output)
        if absent:
            from mkdocs.exceptions import PluginError

            raise PluginError(
                f"docs/reference.md has no entry for {len(absent)} public name(s): "
                f"{', '.join(absent)}; add a `::: module` block that renders each "
                "(or its module), or take the name out of its module's __all__"
            )
    return output
