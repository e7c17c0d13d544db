"""The code a bundle carries: the modules of this package its configs need, as the package ``scripts``.

The model zoo's bundles keep their own code in ``scripts/`` and name it ``scripts.<module>`` in their configs, with the
bundle folder on ``sys.path``. An exported bundle does the same with the part of axial-monai that inference,
explanation, evaluation and fine-tuning use: the modules that the configs' ``_target_`` names import, followed
through every import statement (at module level and inside functions), copied unchanged under ``scripts/``. The
package imports its own modules relatively, so the copy runs as ``scripts`` and can never stand in for, or be
replaced by, an installed ``axial_monai`` of another version. Preprocessing (ANTs), the demo cohort,
cross-validation, reports and the command line are not carried.
"""

from __future__ import annotations

import ast
import shutil
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["PACKAGE", "OWN", "config_modules", "vendored_modules", "write_package"]

#: the import name of the carried code inside a bundle (the model zoo's convention).
PACKAGE = "scripts"
#: the import name of this package.
OWN = __name__.split(".")[0]
_ROOT = Path(__file__).resolve().parents[1]


def _module_file(name: str) -> tuple[Path | None, bool]:
    """``(file, is_package)`` of a module of this package, or ``(None, False)`` for a name that is not one."""
    relative = Path(*name.split(".")[1:])
    package = _ROOT / relative / "__init__.py"
    if package.is_file():
        return package, True
    module = (_ROOT / relative).with_suffix(".py")
    return (module, False) if relative.parts and module.is_file() else (None, False)


def _imports(name: str, path: Path, is_package: bool) -> list[tuple[str, int]]:
    """``(absolute name, level)`` of everything ``path`` imports (at top level or in functions); for
    ``from x import y`` both ``x`` and ``x.y`` (``y`` may be a submodule). ``level`` is 0 for an absolute import."""
    base = name if is_package else name.rpartition(".")[0]
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = base.split(".")
                parts = parts[: len(parts) - node.level + 1]
                target = ".".join([*parts, node.module] if node.module else parts)
            else:
                target = str(node.module)
            found += [(target, node.level)] + [(f"{target}.{alias.name}", node.level) for alias in node.names]
    return found


def config_modules(configs: Iterable[Mapping[str, Any]]) -> list[str]:
    """The modules of this package that the ``_target_`` entries of ``configs`` name (their longest importable
    prefix), sorted."""
    targets: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, Mapping):
            target = node.get("_target_")
            if isinstance(target, str) and target.split(".")[0] == OWN:
                targets.add(target)
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    for config in configs:
        visit(config)
    modules = set()
    for target in targets:
        parts = target.split(".")
        name = next(".".join(parts[:i]) for i in range(len(parts), 0, -1) if _module_file(".".join(parts[:i]))[0])
        modules.add(name)
    return sorted(modules)


def vendored_modules(entry: Iterable[str]) -> tuple[list[str], set[str]]:
    """The modules of this package that importing ``entry`` needs, and the top-level names of other packages.

    Follows every import statement (also inside functions) from the entry modules and their parent packages.

    Returns:
        ``(sorted module names, top-level third-party import names)`` (the standard library left out).
    """
    todo, seen, others = list(entry), set(), set()
    while todo:
        name = todo.pop()
        path, is_package = _module_file(name)
        if name in seen or path is None:
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        for imported, _ in _imports(name, path, is_package):
            top = imported.split(".")[0]
            if top == OWN:
                todo.append(imported)
            elif top not in sys.stdlib_module_names and top != "__future__":
                others.add(top)
    return sorted(seen), others


def write_package(modules: Sequence[str], folder: Path) -> Path:
    """Copy ``modules`` (from :func:`vendored_modules`) unchanged into ``folder/scripts``; returns that folder.

    Raises:
        RuntimeError: if a module imports this package by its absolute name: the copy would then run the installed
            ``axial_monai`` (or fail without one) instead of itself.
    """
    target = folder / PACKAGE
    for name in modules:
        path, is_package = _module_file(name)
        absolute = sorted({n for n, level in _imports(name, path, is_package) if not level and n.split(".")[0] == OWN})
        if absolute:
            raise RuntimeError(f"{name} imports {absolute[0]} by its absolute name; import it relatively.")
        destination = target / path.relative_to(_ROOT)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, destination)
    return target
