"""docker/ read as text (no Docker daemon here): the images hold every app, create the folders
the settings name, and nginx passes on the outer proxy's scheme."""

from __future__ import annotations

import re
import shlex
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
