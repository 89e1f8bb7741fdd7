"""The package's shape, checked by ``make lint`` beside ruff, mypy and the layers contract.

- no ``global`` statement anywhere in ``di/`` (state lives in objects: per tree, per call);
- no module over 900 lines and no class over 700 lines;
- no class of ``di`` subclasses a private class of a dependency: a base imported from
  another package whose name, or a part of whose module path, starts with ``_``, or
  one from a module a dependency keeps internal (:data:`INTERNAL`).

Exits 1 listing every breach, each with its file and line.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

MAX_MODULE_LINES = 900
MAX_CLASS_LINES = 700
# Modules of dependencies that are implementation, not API, whatever their names say.
INTERNAL = ("uvicorn.protocols", "uvicorn.lifespan", "uvicorn.loops", "grpc._cython")


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
        for node in ast.walk(tree):
            if isinstance(node, ast.Global):
                breaches.append(
                    f"{file}:{node.lineno}: a global statement ({', '.join(node.names)})"
                )
            if not isinstance(node, ast.ClassDef):
                continue
            size = (node.end_lineno or node.lineno) - node.lineno + 1
            if size > MAX_CLASS_LINES:
                breaches.append(
                    f"{file}:{node.lineno}: class {node.name} has {size} lines "
                    f"(at most {MAX_CLASS_LINES})"
                )
            for base in node.bases:
                name = dotted(base)
                if name is None:
                    continue
                head, _, rest = name.partition(".")
                origin = names.get(head)
                if origin is None:
                    continue  # defined in this module, or a builtin
                full = f"{origin}.{rest}" if rest else origin
                if private_base(full):
                    breaches.append(
                        f"{file}:{node.lineno}: class {node.name} subclasses {full}, "
                        "a private class of a dependency"
                    )
    return breaches


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
        f"classes <= {MAX_CLASS_LINES}, no private base class of a dependency)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
