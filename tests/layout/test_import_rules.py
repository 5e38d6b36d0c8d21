"""The layout's import rules, checked on the source (every import, including those inside functions)
and at run time: serving (``plugin/``, ``qrw.plugin``) imports nothing from evaluation or search."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PLUGIN = REPO / "plugin"
# qrw.settings and qrw.cli_options read search defaults; qrw.sandbox is a user of the plugin, not a part of it
FORBIDDEN_FOR_PLUGIN = ("qrw.eval", "qrw.search", "qrw.sandbox", "qrw.settings", "qrw.cli_options", "qrw.trainer",
                        "qrw.export", "torch", "transformers", "trl")


def imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [(node.lineno, node.module)] + [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return found


def violations(folder: Path, forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for path in sorted(folder.rglob("*.py")):
        for line, module in imported_modules(path):
            if any(module == f or module.startswith(f + ".") for f in forbidden):
                bad.append(f"{path.relative_to(folder.parent)}:{line} imports {module}")
    return bad


def test_plugin_source_imports_no_evaluation_or_search_code():
    assert violations(PLUGIN, FORBIDDEN_FOR_PLUGIN) == []


def test_the_checker_sees_imports_inside_functions(tmp_path):
    (tmp_path / "m.py").write_text("def f():\n    from qrw.search.runner import search_many\n    import qrw.eval.metrics\n")
    assert len(violations(tmp_path, ("qrw.search", "qrw.eval"))) == 3  # the module and the name, then the import


def test_importing_every_plugin_module_loads_no_evaluation_or_search_module():
    modules = sorted(f"qrw.plugin.{p.stem}" for p in PLUGIN.glob("*.py") if p.stem != "__init__")
    code = (f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
            f"bad = sorted(m for m in sys.modules if m.startswith({FORBIDDEN_FOR_PLUGIN!r}))\nprint(bad)\n"
            "sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
