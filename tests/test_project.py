"""Project-level checks: migrations are complete, deploy settings are clean, pgvector is there."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

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


def test_the_catalogue_never_imports_identification() -> None:
    """Dependencies point one way: identification builds on the catalogue, never the reverse,
    not even inside a function (``identification.services.pipeline`` joins the two)."""
    offenders = []
    for path in sorted((REPO_ROOT / "catalogue").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            if any(name.split(".")[0] in ("identification", "training") for name in names):
                offenders.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}")
    assert offenders == []


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
