"""The package's shape, checked by ``make lint`` beside ruff, mypy and the layers contract.

- no ``global`` statement anywhere in ``di/`` (state lives in objects: per tree, per call);
- no module over 900 lines and no class over 700 lines;
- no class of ``di`` subclasses a private class of a dependency: a base imported from
  another package whose name, or a part of whose module path, starts with ``_``, or
  one from a module a dependency keeps internal (:data:`INTERNAL`). A base is followed
  through the names that hold it (``Base = impl.Protocol``, ``BASES = (Base,)``), into
  ``class X(*BASES)`` and ``type("X", BASES, {})``;
- outside the container package (whose state it is), each ``# noqa: SLF001`` gives
  its reason on its line: ``# noqa: SLF001 - why``.

Exits 1 listing every breach, each with its file and line.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

MAX_MODULE_LINES = 900
MAX_CLASS_LINES = 700
# Modules of dependencies that are implementation, not API, whatever their names say.
INTERNAL = ("uvicorn.protocols", "uvicorn.lifespan", "uvicorn.loops", "grpc._cython")
# The package whose own privates its modules may reach without a reason.
CONTAINER = "_container"
# A noqa naming SLF001, and what follows the codes it names.
SLF001_NOQA = re.compile(r"#\s*noqa:\s*[A-Z0-9, ]*\bSLF001\b[A-Z0-9, ]*(?P<after>.*)$")


def imported_names(tree: ast.Module) -> dict[str, str]:
    """Each name bound by an import at any level, to the dotted path it comes from."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                names[alias.asname or alias.name.split(".")[0]] = (
                    alias.name if alias.asname else alias.name.split(".")[0]
                )
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return names


def held_names(tree: ast.Module, names: dict[str, str]) -> dict[str, list[str]]:
    """Follow assignments that hold imported classes, in source order.

    ``Base = impl.Protocol`` adds ``Base`` to ``names``; ``BASES = (Base, Other)`` is
    returned, as the dotted paths it lists.
    """
    held: dict[str, list[str]] = {}
    assignments = sorted(
        (node for node in ast.walk(tree) if isinstance(node, ast.Assign)),
        key=lambda node: (node.lineno, node.col_offset),
    )
    for node in assignments:
        targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
        if not targets:
            continue
        value = node.value
        if isinstance(value, ast.Tuple | ast.List):
            paths = [p for p in (resolve(e, names) for e in value.elts) if p is not None]
            for target in targets:
                held[target] = paths
            continue
        path = resolve(value, names)
        if path is not None:
            for target in targets:
                names[target] = path
    return held


def resolve(node: ast.expr, names: dict[str, str]) -> str | None:
    """The dotted path an expression names through the module's imports, if it does."""
    name = dotted(node)
    if name is None:
        return None
    head, _, rest = name.partition(".")
    origin = names.get(head)
    if origin is None:
        return None  # defined in this module, or a builtin
    return f"{origin}.{rest}" if rest else origin


def base_paths(
    bases: list[ast.expr], names: dict[str, str], held: dict[str, list[str]]
) -> list[str]:
    """The dotted paths of the bases listed, ``*BASES`` and a tuple held by name too."""
    paths: list[str] = []
    for base in bases:
        if isinstance(base, ast.Starred):
            base = base.value
        if isinstance(base, ast.Tuple | ast.List):
            paths += base_paths(list(base.elts), names, held)
        elif isinstance(base, ast.Name) and base.id in held:
            paths += held[base.id]
        else:
            path = resolve(base, names)
            if path is not None:
                paths.append(path)
    return paths


def dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = dotted(node.value)
        return None if inner is None else f"{inner}.{node.attr}"
    if isinstance(node, ast.Subscript):
        return dotted(node.value)
    return None


def private_base(path: str) -> bool:
    parts = path.split(".")
    if parts[0] == "di":
        return False
    return any(part.startswith("_") for part in parts) or path.startswith(INTERNAL)


def check(root: Path) -> list[str]:
    breaches: list[str] = []
    for file in sorted(root.rglob("*.py")):
        text = file.read_text()
        lines = text.count("\n")
        if lines > MAX_MODULE_LINES:
            breaches.append(f"{file}: {lines} lines (at most {MAX_MODULE_LINES} a module)")
        tree = ast.parse(text, str(file))
        names = imported_names(tree)
        held = held_names(tree, names)
        for node in ast.walk(tree):
            if isinstance(node, ast.Global):
                breaches.append(
                    f"{file}:{node.lineno}: a global statement ({', '.join(node.names)})"
                )
            if isinstance(node, ast.Call) and dotted(node.func) == "type" and len(node.args) == 3:
                made = "a class made by type()"
                bases = [node.args[1]]
            elif isinstance(node, ast.ClassDef):
                made = f"class {node.name}"
                bases = node.bases
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                if size > MAX_CLASS_LINES:
                    breaches.append(
                        f"{file}:{node.lineno}: class {node.name} has {size} lines "
                        f"(at most {MAX_CLASS_LINES})"
                    )
            else:
                continue
            for full in base_paths(bases, names, held):
                if private_base(full):
                    breaches.append(
                        f"{file}:{node.lineno}: {made} subclasses {full}, "
                        "a private class of a dependency"
                    )
        if CONTAINER not in file.relative_to(root).parts:
            breaches += reasonless_noqa(file, text)
    return breaches


def reasonless_noqa(file: Path, text: str) -> list[str]:
    """Each ``# noqa: SLF001`` of ``text`` that does not say why (``- reason``)."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        match = SLF001_NOQA.search(line)
        if match is not None and not re.match(r"\s*-\s+\S", match["after"]):
            found.append(
                f"{file}:{number}: a noqa: SLF001 without its reason (# noqa: SLF001 - why)"
            )
    return found


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "di")
    breaches = check(root)
    for breach in breaches:
        print(breach)
    if breaches:
        print(f"{len(breaches)} breach(es) of the package's shape", file=sys.stderr)
        return 1
    print(
        f"shape: {root} keeps its rules (no global, modules <= {MAX_MODULE_LINES} lines, "
        f"classes <= {MAX_CLASS_LINES}, no private base class of a dependency, "
        "each noqa: SLF001 with its reason)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
