"""The installed app is the tested app: the wheel built from pyproject.toml holds every app,
its templates and static files, and runs from outside the checkout (``check --deploy``,
``migrate``, ``collectstatic``, a page and a static file through gunicorn)."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

import pytest

from conftest import REPO_ROOT, _test_database_url
from tests.helpers import first_party_apps

pytestmark = pytest.mark.slow

PACKAGE_DIR = REPO_ROOT / "wildweb"
HOST = "wildweb.example.org"
# Whatever git ignores or a build leaves behind; the rest is what a release is built from.
NOT_SOURCE = shutil.ignore_patterns(
    ".venv",
    ".git",
    "var",
    "media",
    "build",
    "*.egg-info",
    "staticfiles",
    "__pycache__",
    ".pytest_cache",
    "test-artifacts",
    "shared",
)


def package_files(folder: str) -> list[str]:
    """Paths inside the wheel (``wildweb/templates/base.html``) of every file under a folder of
    the package in the checkout."""
    root = PACKAGE_DIR / folder
    return sorted(str(path.relative_to(REPO_ROOT)) for path in root.rglob("*") if path.is_file())


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Built from a copy, so concurrent sessions never share setuptools' build/ folder.
    source = tmp_path_factory.mktemp("source") / "wildweb"
    shutil.copytree(REPO_ROOT, source, ignore=NOT_SOURCE, symlinks=True)
    dist = tmp_path_factory.mktemp("dist")
    # No build isolation: it would download setuptools, and tests run offline.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(dist),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (path,) = dist.glob("wildweb-*.whl")
    return path


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("installed") / "site"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return target.resolve()


@pytest.fixture
def scratch_database_url(django_db_blocker) -> Iterator[str]:  # noqa: ANN001
    """An empty database on the test server, for a ``migrate`` from nothing."""
    from django.db import connection

    name = f"wildweb_wheel_{os.getpid()}"
    with django_db_blocker.unblock():
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
            cursor.execute(f'CREATE DATABASE "{name}"')
        url = urlparse(_test_database_url())._replace(path=f"/{name}").geturl()
    yield url
    with django_db_blocker.unblock():
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_wheel_holds_every_app_and_its_templates_and_static_files(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    apps = first_party_apps()
    assert "notifications" in apps  # the list is really read from the settings
    missing = [app for app in apps if f"{app.replace('.', '/')}/__init__.py" not in names]
    assert missing == []
    assert "wildweb/settings.py" in names
    templates, static = package_files("templates"), package_files("static")
    assert "wildweb/templates/base.html" in templates and "wildweb/static/css/wildweb.css" in static
    assert [path for path in templates + static if path not in names] == []
    assert not any(name.startswith("tests/") for name in names)


# Run inside the installed copy: where every app, template and static file was loaded from.
ORIGINS = """
import importlib, json, sys
import django
django.setup()
from django.contrib.staticfiles import finders
from django.template.loader import get_template
apps, templates, static = json.loads(sys.argv[1])
print(json.dumps({
    "modules": {app: importlib.import_module(app).__file__ for app in [*apps, "wildweb", "django"]},
    "templates": {name: get_template(name).origin.name for name in templates},
    "static": {name: finders.find(name) for name in static},
}))
"""


def http_get(port: int, path: str) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    # As the TLS-terminating proxy in front would send it; SECURE_SSL_REDIRECT is on.
    connection.request("GET", path, headers={"Host": HOST, "X-Forwarded-Proto": "https"})
    response = connection.getresponse()
    response.body = response.read()
    connection.close()
    return response


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_installed_wheel_runs_outside_the_checkout(
    installed: Path, scratch_database_url: str, tmp_path: Path
) -> None:
    from django.conf import settings

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    dependencies = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "PYTHONPATH": os.pathsep.join([str(installed), *dependencies]),
        "DJANGO_SETTINGS_MODULE": "wildweb.settings",
        "DEBUG": "0",
        "SECRET_KEY": "x" * 60 + "-production-like-secret-9f8e7d6c5b4a",
        "ALLOWED_HOSTS": HOST,
        "DATABASE_URL": scratch_database_url,
        "REDIS_URL": settings.REDIS_URL,
        "MEDIA_ROOT": str(tmp_path / "media"),
        "PRIVATE_ROOT": str(tmp_path / "private"),
        "STATIC_ROOT": str(tmp_path / "staticfiles"),
    }
    # -S: no .pth files, so the venv's editable install of the checkout is not importable;
    # the dependencies come from its site-packages on PYTHONPATH, after the installed wheel.
    python = [sys.executable, "-S"]

    def run(*args: str) -> str:
        result = subprocess.run(
            [*python, *args], cwd=run_dir, env=env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    templates = [p.removeprefix("wildweb/templates/") for p in package_files("templates")]
    static = [p.removeprefix("wildweb/static/") for p in package_files("static")]
    origins = json.loads(run("-c", ORIGINS, json.dumps([first_party_apps(), templates, static])))
    loaded = {**origins["modules"], **origins["templates"], **origins["static"]}
    django_file = Path(loaded.pop("django"))
    assert not django_file.is_relative_to(installed)  # a dependency, from the venv
    assert {name: path for name, path in loaded.items() if path is None} == {}
    outside = {
        name: path for name, path in loaded.items() if not Path(path).is_relative_to(installed)
    }
    assert outside == {}

    assert "no issues" in run("-m", "django", "check", "--deploy", "--fail-level", "WARNING")
    run("-m", "django", "migrate", "--noinput")
    run("-m", "django", "collectstatic", "--noinput")

    port = free_port()
    log = tmp_path / "gunicorn.log"
    with log.open("w") as log_file:
        server = subprocess.Popen(
            [
                *python,
                "-m",
                "gunicorn",
                "wildweb.wsgi",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "1",
                "--timeout",
                "120",
            ],
            cwd=run_dir,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                page = http_get(port, "/species/")
                break
            except OSError:
                assert server.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.5)
        assert page.status == 200, (page.status, page.body[:500], log.read_text())
        stylesheet = re.search(r'href="(/static/css/wildweb\.[0-9a-f]+\.css)"', page.body.decode())
        assert stylesheet, page.body[:2000]  # hashed by the manifest storage
        css = http_get(port, stylesheet.group(1))
        assert css.status == 200 and css.getheader("Content-Type", "").startswith("text/css")
        assert css.body == (tmp_path / "staticfiles" / stylesheet.group(1)[8:]).read_bytes()
    finally:
        server.terminate()
        server.wait(timeout=60)
