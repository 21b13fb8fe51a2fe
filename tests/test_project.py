"""Project-level checks: migrations are complete, deploy settings are clean, pgvector is there."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.db import connection

from conftest import REPO_ROOT


def manage(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def test_makemigrations_finds_nothing_to_do() -> None:
    result = manage("makemigrations", "--check", "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_deploy_is_clean_with_production_settings() -> None:
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        env={
            "DEBUG": "0",
            "SECRET_KEY": "x" * 60 + "-production-like-secret-9f8e7d6c5b4a",
            "ALLOWED_HOSTS": "wildweb.example.org",
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.django_db
def test_database_has_pgvector() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        assert cursor.fetchone() is not None
        cursor.execute("SELECT '[1,2,3]'::vector <=> '[1,2,4]'::vector")
        assert 0 < cursor.fetchone()[0] < 0.1


@pytest.mark.django_db
def test_api_schema_and_docs_page_are_served_without_a_cdn(client) -> None:  # noqa: ANN001
    schema = client.get("/api/schema/")
    assert schema.status_code == 200 and b"/api/sightings/" in schema.content
    docs = client.get("/api/docs/").content.decode()
    assert "swagger-ui" in docs and "cdn" not in docs.lower()


# Which parts may import which: dependencies point one way, from the top of the table down.
# ``wildweb`` is two parts: its wiring (the URL table and the job sweep, which reach into
# every app) sits above the apps; the rest of it (settings, errors, jobs, storage) below them.
WILDWEB_WIRING = ("wildweb.urls", "wildweb.tasks")
ALLOWED_IMPORTS: dict[str, set[str]] = {
    "wildweb wiring": {
        "training",
        "identification",
        "notifications",
        "catalogue",
        "reid",
        "wildweb",
    },
    "training": {"identification", "notifications", "catalogue", "reid", "wildweb"},
    "identification": {"notifications", "catalogue", "reid", "wildweb"},
    "notifications": {"catalogue", "wildweb"},
    "catalogue": {"reid", "wildweb"},
    "wildweb": set(),
    "reid": set(),
}
DJANGO_PACKAGES = {"django", "rest_framework", "drf_spectacular"}


def _part(module: str) -> str | None:
    """The part of the project a module (``identification.services.pipeline``) belongs to."""
    if any(module == name or module.startswith(f"{name}.") for name in WILDWEB_WIRING):
        return "wildweb wiring"
    top = module.split(".")[0]
    return top if top in ALLOWED_IMPORTS else None


def _imports(tree: ast.AST) -> list[tuple[int, str]]:
    """Every absolute import in a module, at any depth (inside functions too): (line, name)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # ``from wildweb import tasks`` imports the module ``wildweb.tasks``.
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def _forbidden_imports(module: str, tree: ast.AST) -> list[str]:
    importer = _part(module)
    offenders = []
    for line, name in _imports(tree):
        imported = _part(name)
        if imported in (None, importer) or imported in ALLOWED_IMPORTS[importer]:
            continue
        offenders.append(f"{module}:{line} ({importer}) imports {name} ({imported})")
    if importer == "reid":
        offenders += [
            f"{module}:{line} imports {name}: reid imports no Django"
            for line, name in _imports(tree)
            if name.split(".")[0] in DJANGO_PACKAGES
        ]
    return offenders


def test_every_import_between_the_apps_follows_the_dependency_table() -> None:
    offenders = []
    for app in ("catalogue", "identification", "training", "notifications", "reid", "wildweb"):
        for path in sorted((REPO_ROOT / app).rglob("*.py")):
            module = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts)
            tree = ast.parse(path.read_text(), filename=str(path))
            offenders += _forbidden_imports(module.removesuffix(".__init__"), tree)
    assert offenders == []


def test_the_dependency_table_has_no_cycle() -> None:
    def reaches(part: str, target: str, seen: frozenset[str] = frozenset()) -> bool:
        below = ALLOWED_IMPORTS[part] - {part}
        return target in below or any(
            reaches(p, target, seen | {part}) for p in below - seen if p in ALLOWED_IMPORTS
        )

    # "wildweb wiring" may import the rest of wildweb, which imports no app, so no cycle.
    assert [p for p in ALLOWED_IMPORTS if reaches(p, p)] == []
    assert not ALLOWED_IMPORTS["wildweb"] and _part("wildweb.tasks") == "wildweb wiring"


def test_the_import_check_sees_imports_inside_functions_and_from_imports() -> None:
    tree = ast.parse(
        "import reid.ranking\n"
        "def f():\n"
        "    from identification.models import Identification\n"
        "    import training.services.runs\n"
        "from wildweb import tasks\n"
        "from django.db import models\n"
    )
    assert sorted(o.split(" imports ")[1] for o in _forbidden_imports("catalogue.x", tree)) == [
        "identification.models.Identification (identification)",
        "training.services.runs (training)",
        "wildweb.tasks (wildweb wiring)",
    ]
    assert len(_forbidden_imports("reid.x", tree)) == 4  # two apps, the wiring, and Django


APPS = ("catalogue", "identification", "training", "notifications", "reid", "wildweb")
# Modules every Django app may have at its top, covered by the README's sentence about them.
STANDARD_ROOMS = {
    "__init__.py",
    "admin.py",
    "api.py",
    "apps.py",
    "context_processors.py",
    "forms.py",
    "models.py",
    "selectors.py",
    "serializers.py",
    "services.py",
    "tasks.py",
    "urls.py",
    "views.py",
}


@dataclass(frozen=True)
class MapRow:
    folder: Path
    modules: list[Path]  # every ``.py`` the row names
    text: str


def _readme_map() -> list[MapRow]:
    """The rows of the README's "How it is put together" table. The first cell names paths
    from the repository root; the second names modules from the first cell's folder."""
    text = (REPO_ROOT / "README.md").read_text()
    section = text.split("\n## How it is put together\n", 1)[1].split("\n#", 1)[0]
    rows = []
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        part, holds = line.strip("|").split("|", 1)
        paths = [REPO_ROOT / name for name in re.findall(r"`([^`]+)`", part)]
        folder = paths[0].parent if paths[0].suffix == ".py" else paths[0]
        modules = [p for p in paths if p.suffix == ".py"]
        modules += [folder / name for name in re.findall(r"`([\w/]+\.py)`", holds)]
        rows.append(MapRow(folder=folder, modules=modules, text=line))
    return rows


def test_every_module_the_readme_map_names_exists() -> None:
    rows = _readme_map()
    assert len(rows) > 15
    missing = [
        str(m.relative_to(REPO_ROOT)) for row in rows for m in row.modules if not m.is_file()
    ]
    assert missing == []


def test_every_module_of_the_apps_is_in_the_readme_map() -> None:
    rows = _readme_map()
    named = {module for row in rows for module in row.modules}
    app_rows = {row.folder: row.text for row in rows}
    unnamed = []
    for app in APPS:
        for path in sorted((REPO_ROOT / app).rglob("*.py")):
            if "migrations" in path.parts or path.name == "__init__.py":
                continue
            if path.parent.name == "commands":  # a command is named in its app's row
                covered = f"`{path.stem}`" in app_rows[REPO_ROOT / app]
            else:
                covered = path in named or (
                    path.parent == REPO_ROOT / app and path.name in STANDARD_ROOMS
                )
            if not covered:
                unnamed.append(str(path.relative_to(REPO_ROOT)))
    assert unnamed == []


def test_web_process_never_imports_torch() -> None:
    """Loading every URL's view (and the Celery app) must not pull torch into the web server."""
    script = (
        "import sys, django; django.setup(); "
        "from django.urls import get_resolver; import wildweb.celery; "
        "[p.callback for p in get_resolver().url_patterns if hasattr(p, 'callback')]; "
        "import catalogue.views, catalogue.public_views, catalogue.api, identification.views, "
        "identification.sighting_views, identification.api, training.views, training.api; "
        "print('torch' in sys.modules, 'timm' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "wildweb.settings"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False False", result.stdout


def test_production_collectstatic_resolves_every_asset(tmp_path) -> None:  # noqa: ANN001
    result = manage(
        "collectstatic",
        "--noinput",
        env={
            "DEBUG": "0",
            "SECRET_KEY": "x" * 60,
            "ALLOWED_HOSTS": "wildweb.example.org",
            "STATIC_ROOT": str(tmp_path),
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert list(tmp_path.glob("vendor/leaflet/leaflet.*.js"))  # hashed by the manifest storage
