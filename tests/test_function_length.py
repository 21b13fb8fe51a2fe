"""No function in the apps is over 80 lines: a longer one is split along its natural seams."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO_ROOT

MAX_LINES = 80
APPS = ("catalogue", "identification", "training", "notifications", "reid", "wildweb")


def functions_over(limit: int, *, root: Path, apps: tuple[str, ...]) -> dict[str, int]:
    """``path:name`` -> lines of every function or method under ``root/<app>`` (migrations
    left out) longer than ``limit`` lines, counted from its ``def`` line to its last line."""
    long = {}
    for app in apps:
        for path in sorted((root / app).rglob("*.py")):
            relative = path.relative_to(root)
            if "migrations" in relative.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines = node.end_lineno - node.lineno + 1
                    if lines > limit:
                        long[f"{relative.as_posix()}:{node.name}"] = lines
    return long


def test_no_function_in_the_apps_is_over_80_lines() -> None:
    too_long = functions_over(MAX_LINES, root=REPO_ROOT, apps=APPS)
    assert too_long == {}, f"split these functions of over {MAX_LINES} lines: {too_long}"


def test_length_counts_def_to_last_line_in_every_module_but_migrations(tmp_path: Path) -> None:
    app = tmp_path / "app"
    (app / "migrations").mkdir(parents=True)
    statements = [f"x{i} = {i}" for i in range(MAX_LINES - 1)]
    # Exactly 80 lines: the decorator is not counted.
    fits = "@staticmethod\ndef fits():\n" + "".join(f"    {s}\n" for s in statements)
    # 81 lines, counting the blank one.
    too_long = (
        "class Animal:\n    async def too_long(self):\n"
        + "".join(f"        {s}\n" for s in statements[:-1])
        + "\n        return x0\n"
    )
    (app / "module.py").write_text(fits + "\n\n" + too_long)
    (app / "migrations" / "0001_initial.py").write_text(too_long)
    found = functions_over(MAX_LINES, root=tmp_path, apps=("app",))
    assert found == {"app/module.py:too_long": MAX_LINES + 1}
