"""The code's shape, as DESIGN.md asks and CI enforces beside ruff and lint-imports: short
functions, a docstring opening every module, a small top level, no import cycles, and a spec
validated without loading the heavy libraries."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import grimp

PACKAGE = Path(__file__).resolve().parents[1] / "xit_dist"
MAX_FUNCTION_LINES = 60
TOP_LEVEL_MODULES = {"__init__.py", "cli.py", "console.py", "errors.py"}


def package_modules() -> list[Path]:
    return sorted(path for path in PACKAGE.rglob("*.py") if "__pycache__" not in path.parts)


def test_no_function_is_longer_than_60_lines():
    """Counted from ``def`` to the function's last line."""
    too_long = []
    for path in package_modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} ({length} lines)")
    assert not too_long, "functions over 60 lines:\n" + "\n".join(too_long)


def test_every_module_opens_with_a_docstring():
    missing = [
        str(path.relative_to(PACKAGE.parent))
        for path in package_modules()
        if not ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert not missing, "modules without a docstring saying their one job:\n" + "\n".join(missing)


def test_the_top_level_holds_only_the_front_modules_and_subpackages():
    """cli, errors, console and __init__; everything else lives in a subpackage (a folder of
    Python modules has an ``__init__.py``; a folder of data files, such as ds_configs/, has none)."""
    stray_modules = sorted(path.name for path in PACKAGE.glob("*.py") if path.name not in TOP_LEVEL_MODULES)
    assert not stray_modules, f"modules at the top of xit_dist/: {stray_modules}"
    folders_of_modules_without_init = sorted(
        folder.name
        for folder in PACKAGE.iterdir()
        if folder.is_dir() and folder.name != "__pycache__" and any(folder.rglob("*.py")) and not (folder / "__init__.py").is_file()
    )
    assert not folders_of_modules_without_init, f"folders of modules that are not packages: {folders_of_modules_without_init}"


def test_no_import_cycles():
    """No module reaches itself through its imports, the imports inside functions and under
    TYPE_CHECKING included (grimp sees them all)."""
    graph = grimp.build_graph("xit_dist", cache_dir=None)  # annotation-only imports (TYPE_CHECKING) count too
    cycles = set()
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back:
                loop = (module, *back[:-1])  # the cycle once round, written from its first module by name
                start = loop.index(min(loop))
                cycles.add(" -> ".join((*loop[start:], *loop[:start], loop[start])))
    assert not cycles, "import cycles:\n" + "\n".join(sorted(cycles))


def test_validating_a_spec_loads_no_heavy_library():
    """``xit-dist validate`` stays fast and starts nothing: config imports no ray, deepspeed or
    torch, and neither does anything a spec's validation reaches."""
    heavy = ("torch", "ray", "deepspeed")
    script = (
        "import sys\n"
        "from xit_dist.config.load import load_spec\n"
        "load_spec('ray_configs/demo.yaml')\n"
        f"print(sorted(name for name in {heavy!r} if name in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=PACKAGE.parent, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"validating ray_configs/demo.yaml loaded {result.stdout.strip()}"


def test_readme_layout_table_lists_every_module():
    """The README's layout table names every module of the package, and no module that is gone."""
    readme = (PACKAGE.parent / "README.md").read_text(encoding="utf-8")
    listed = {line.split("`")[1] for line in readme.splitlines() if line.startswith("| `xit_dist/") and line.split("`")[1].endswith(".py")}
    modules = {str(path.relative_to(PACKAGE.parent)) for path in package_modules()}
    assert listed == modules, f"not in README's layout table: {sorted(modules - listed)}; listed but gone: {sorted(listed - modules)}"
