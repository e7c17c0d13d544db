"""The package's import graph points downwards only (see docs/architecture.md)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "axial_monai"

#: unit (top-level module or subpackage of axial_monai) -> layer; a unit may import units of lower layers only.
#: A unit that is not listed counts as the top layer (an application: it may import anything, nothing imports it).
LAYERS = {
    "errors": 0,
    "io": 0,
    "log": 0,
    "layout": 0,
    "commandline": 1,
    "geometry": 1,
    "html_page": 1,
    "input_check": 1,
    "configs": 1,
    "derivatives": 1,
    "metrics": 1,
    "transforms": 2,
    "networks": 2,
    "preprocess": 2,
    "explain": 4,
    "data": 3,
    "scores": 4,
    "run": 4,
    "run_settings": 5,
    "engines": 4,
    "handlers": 5,
    "crossval": 5,
    "report": 6,
    "export": 6,
    "predict": 6,
    "preprocess_scans": 6,
    "paper_table": 6,
    "deploy": 7,
    "cli": 8,
}
TOP = max(LAYERS.values()) + 1


def _unit(module: str) -> str | None:
    """``axial_monai.data.clinica`` -> ``data``; ``None`` for the package root or another package."""
    parts = module.split(".")
    return parts[1] if parts[0] == "axial_monai" and len(parts) > 1 else None


def import_edges() -> set[tuple[str, str, str]]:
    """``(importing unit, imported unit, file)`` for every import between two units of the package."""
    edges = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(relative.parts[:-1] if relative.name == "__init__" else relative.parts)
        unit = _unit(module)
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package.split(".")
                base = base[: len(base) - node.level + 1] if node.level else []
                target = ".".join([*base, node.module] if node.module else base)
                targets = [target] + [f"{target}.{alias.name}" for alias in node.names] if not node.module else [target]
            else:
                continue
            for target in targets:
                other = _unit(target)
                if not unit or not other or other == unit:
                    continue
                if (PACKAGE / other).is_dir() or (PACKAGE / f"{other}.py").is_file():  # not an imported name
                    edges.add((unit, other, str(path.relative_to(PACKAGE.parent))))
    return edges


def test_imports_only_point_downwards():
    upward = sorted(
        f"{file}: {unit} (layer {LAYERS.get(unit, TOP)}) imports {other} (layer {LAYERS.get(other, TOP)})"
        for unit, other, file in import_edges()
        if LAYERS.get(other, TOP) >= LAYERS.get(unit, TOP)
    )
    assert upward == [], "\n".join(upward)


def test_the_checker_sees_the_real_edges():
    """The walk finds imports in every form used in the package (absolute, relative, ``from .. import``)."""
    edges = {(unit, other) for unit, other, _ in import_edges()}
    assert {("handlers", "explain"), ("crossval", "data"), ("networks", "geometry"), ("data", "io")} <= edges
    assert ("data", "preprocess") not in edges and ("transforms", "networks") not in edges


#: the most lines a module of the package may have: past it, a module holds more than one idea.
MAX_MODULE_LINES = 500
#: the longest Python expression a shipped config may hold in a string: a longer one is a named, tested callable.
MAX_EXPRESSION_CHARS = 120
CONFIGS = PACKAGE.parent / "bundle" / "configs"


def long_modules(limit: int = MAX_MODULE_LINES) -> list[str]:
    """``"<path>: <lines>"`` for each module of the package longer than ``limit`` lines."""
    sizes = {path: len(path.read_text().splitlines()) for path in sorted(PACKAGE.rglob("*.py"))}
    return [f"{path.relative_to(PACKAGE.parent)}: {n}" for path, n in sizes.items() if n > limit]


def long_expressions(limit: int = MAX_EXPRESSION_CHARS) -> list[str]:
    """``"<config> <id>: <length>"`` for each ``$`` expression of a shipped config longer than ``limit``."""
    import json

    found = []

    def walk(node, where, config):
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in items:
            walk(value, f"{where}#{key}" if where else str(key), config)
        if isinstance(node, str) and node.startswith("$") and len(node) > limit:
            found.append(f"{config} {where}: {len(node)}")

    for config in sorted(CONFIGS.glob("*.json")):
        walk(json.loads(config.read_text()), "", config.name)
    return found


def test_no_module_holds_more_than_one_idea():
    assert long_modules() == []


def test_no_config_hides_code_in_a_long_string():
    assert long_expressions() == []


def test_the_size_checks_see_long_modules_and_expressions():
    """A limit below the real sizes finds the largest module and the longest expression (the checks can fail)."""
    assert any(line.startswith("axial_monai/cli.py") for line in long_modules(400))
    assert any(line.startswith("train.json") for line in long_expressions(100))
