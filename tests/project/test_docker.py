"""docker/ read as text (no Docker daemon here): the images hold every app, create the folders
the settings name, and nginx passes on the outer proxy's scheme."""

from __future__ import annotations

import http.client
import re
import shlex
import shutil
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from conftest import REPO_ROOT
from tests.helpers import first_party_apps

DOCKER = REPO_ROOT / "docker"
DOCKERFILES = sorted(DOCKER.glob("Dockerfile*"))
# Folders the app writes to (owned by the app's user) and the one collectstatic fills.
WRITABLE_ROOTS = ("MEDIA_ROOT", "PRIVATE_ROOT")
ROOTS = (*WRITABLE_ROOTS, "STATIC_ROOT")


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with continuation lines joined and comments dropped."""
    lines = [
        line for line in dockerfile.read_text().splitlines() if not line.lstrip().startswith("#")
    ]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in joined.splitlines()
        if line.strip()
    ]


def env_of(dockerfile: Path) -> dict[str, str]:
    env = {}
    for instruction, arguments in instructions(dockerfile):
        if instruction == "ENV":
            env.update(item.split("=", 1) for item in shlex.split(arguments))
    return env


def compose_env() -> dict[str, str]:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    return {key: str(value) for key, value in compose["x-app-env"].items()}


def run_words(dockerfile: Path, command: str) -> set[str]:
    """Every argument of ``command`` (``mkdir``, ``chown``) in the file's RUN lines."""
    words = set()
    for instruction, arguments in instructions(dockerfile):
        if instruction == "RUN":
            for part in re.split(r"&&|;", arguments):
                tokens = shlex.split(part)
                if tokens and tokens[0] == command:
                    words.update(tokens[1:])
    return words


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_image_builds_every_app_into_its_wheel(dockerfile: Path) -> None:
    copied = {
        shlex.split(arguments)[0]
        for instruction, arguments in instructions(dockerfile)
        if instruction == "COPY" and not arguments.startswith("--from")
    }
    packages = {app.split(".")[0] for app in first_party_apps()} | {"wildweb"}
    assert packages - copied == set()
    assert any(
        instruction == "RUN" and "pip wheel" in arguments
        for instruction, arguments in instructions(dockerfile)
    )


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_image_creates_the_folders_the_settings_name(dockerfile: Path) -> None:
    env = {**env_of(dockerfile), **compose_env()}
    assert {"MEDIA_ROOT", "PRIVATE_ROOT"} <= env.keys()
    made, owned = run_words(dockerfile, "mkdir"), run_words(dockerfile, "chown")
    assert "wildweb" in owned
    assert {name: env[name] for name in ROOTS if name in env and env[name] not in made} == {}
    not_owned = {name: env[name] for name in WRITABLE_ROOTS if env[name] not in owned}
    assert not_owned == {}


def test_nginx_passes_on_the_outer_proxys_scheme() -> None:
    """Behind the TLS proxy ``$scheme`` is always http: with SECURE_SSL_REDIRECT it would loop."""
    conf = (DOCKER / "nginx.conf").read_text()
    (value,) = re.findall(r"proxy_set_header\s+X-Forwarded-Proto\s+(\S+);", conf)
    assert value != "$scheme"
    mapping = re.search(
        r"map\s+\$http_x_forwarded_proto\s+" + re.escape(value) + r"\s*\{(?P<body>[^}]*)\}", conf
    )
    assert mapping, conf
    assert re.search(r"default\s+\$http_x_forwarded_proto;", mapping["body"])
    assert re.search(r'""\s+\$scheme;', mapping["body"])


class _EchoProto(BaseHTTPRequestHandler):
    """Stands in for ``web``: answers with the X-Forwarded-Proto it was sent."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = (self.headers.get("X-Forwarded-Proto") or "").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _proto_seen_by_web(port: int, headers: dict[str, str]) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", "/", headers=headers)
    response = connection.getresponse()
    assert response.status == 200
    return response.read().decode()


def test_real_nginx_passes_on_the_outer_proxys_scheme(tmp_path: Path) -> None:
    """docker/nginx.conf run by a real nginx, with only its listen and upstream moved."""
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if not nginx:
        pytest.skip("no nginx binary on this machine")
    web = ThreadingHTTPServer(("127.0.0.1", 0), _EchoProto)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    port = _free_port()
    site = (DOCKER / "nginx.conf").read_text()
    site = site.replace("http://web:8000", f"http://127.0.0.1:{web.server_port}")
    site = site.replace("listen 80;", f"listen 127.0.0.1:{port};")
    (tmp_path / "site.conf").write_text(site)
    temp_paths = " ".join(
        f"{kind}_temp_path {tmp_path / kind};" for kind in ("client_body", "proxy", "fastcgi")
    )
    (tmp_path / "nginx.conf").write_text(
        f"daemon off; pid {tmp_path / 'nginx.pid'}; error_log {tmp_path / 'error.log'};\n"
        f"events {{}}\nhttp {{ access_log off; {temp_paths}\n"
        f"uwsgi_temp_path {tmp_path / 'uwsgi'}; scgi_temp_path {tmp_path / 'scgi'};\n"
        f"include {tmp_path / 'site.conf'}; }}\n"
    )
    server = subprocess.Popen([nginx, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")])
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                behind_tls = _proto_seen_by_web(port, {"X-Forwarded-Proto": "https"})
                break
            except OSError:
                assert server.poll() is None, (tmp_path / "error.log").read_text()
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert behind_tls == "https"
        assert _proto_seen_by_web(port, {}) == "http"  # no outer proxy: the scheme nginx saw
    finally:
        server.terminate()
        server.wait(timeout=30)
        web.shutdown()


def test_compose_hands_every_object_store_setting_to_web_and_workers() -> None:
    """Each OBJECT_STORE_* variable the settings read reaches every app service (one shared
    environment), and the ``objects`` profile runs the store and makes its bucket."""
    read = set(
        re.findall(
            r'env_str\("(OBJECT_STORE_\w+)"', (REPO_ROOT / "wildweb" / "settings.py").read_text()
        )
    )
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    assert read - {"OBJECT_STORE_PREFIX"} <= compose_env().keys(), read
    app_services = [name for name, service in compose["services"].items() if "build" in service]
    assert all(
        compose["services"][name]["environment"] == compose["x-app-env"] for name in app_services
    )
    assert {"objects", "objects-bucket"} <= compose["services"].keys()
    assert compose["services"]["objects"]["profiles"] == ["objects"]
    assert "ports" not in compose["services"]["objects"]  # the bucket is reached by the app only
