"""Test session set-up: real Postgres+pgvector, real Redis, a real Celery worker on demand.

Runs before Django's settings are read, so the variables below reach the settings module and
every worker process a test starts.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

REPO_ROOT = Path(__file__).resolve().parent
SHARED_DATASETS = REPO_ROOT.parent / "shared" / "datasets"

CELERY_KEY_PREFIX = f"wildweb-test-{os.getpid()}:"


@pytest.fixture(scope="session", autouse=True)
def _media_root_temporary() -> Iterator[None]:
    """Photos and private files written by tests go to temporary folders, which workers are
    pointed at too."""
    from django.test.utils import override_settings

    with override_settings(
        MEDIA_ROOT=Path(tempfile.mkdtemp(prefix="wildweb-test-media-")),
        PRIVATE_ROOT=Path(tempfile.mkdtemp(prefix="wildweb-test-private-")),
    ):
        yield


@pytest.fixture(scope="session", autouse=True)
def _celery_keys_of_this_session() -> None:
    """This session's tasks stay its own, even beside another session on the same Redis.

    pytest-django reads the settings before this file runs, so the prefix is set on the
    Celery app here and passed to worker processes through their environment.
    """
    from wildweb.celery import app

    app.conf.broker_transport_options = {
        **app.conf.broker_transport_options,
        "global_keyprefix": CELERY_KEY_PREFIX,
    }


@pytest.fixture(scope="session")
def django_db_modify_db_settings() -> None:
    """A test database of this session's own, so concurrent sessions never share one."""
    from django.conf import settings

    settings.DATABASES["default"].setdefault("TEST", {})["NAME"] = f"test_wildweb_{os.getpid()}"


@pytest.fixture(autouse=True)
def _cache_of_this_test(settings) -> None:  # noqa: ANN001 - pytest-django fixture
    """Throttle counts and failed sign-ins start at zero in each test, on the real Redis, with
    no flush of a Redis that other sessions and the broker share: a key prefix of its own."""
    settings.CACHES = {
        "default": {
            **settings.CACHES["default"],
            "KEY_PREFIX": f"wildweb-test-{os.getpid()}-{uuid.uuid4().hex}",
        }
    }


@pytest.fixture(autouse=True)
def _media_root_clean(settings) -> Iterator[None]:  # noqa: ANN001 - pytest-django fixture
    yield
    # Each test starts with no stored files, so "nothing was saved" is checkable.
    for root in (Path(settings.MEDIA_ROOT), Path(settings.PRIVATE_ROOT)):
        for path in sorted(root.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    if not SHARED_DATASETS.exists():
        pytest.skip("../shared/datasets is not beside this checkout")
    return SHARED_DATASETS


def _test_database_url() -> str:
    from django.db import connection

    db = connection.settings_dict
    host = db["HOST"]
    netloc = f"{db['USER']}:{db['PASSWORD']}@" + ("" if host.startswith("/") else host)
    if db["PORT"]:
        netloc += f":{db['PORT']}"
    query = f"?host={host}" if host.startswith("/") else ""
    return f"postgresql://{netloc}/{db['NAME']}{query}"


class CeleryWorker:
    """A real ``celery worker`` process on the test database and the test Redis.

    Args:
        queues: Comma-separated queues; default all of them (one worker does everything).
        pool: ``solo`` (one process) or ``prefork`` (a pool child per task, time limits).
        beat: Also run the scheduler (the periodic job sweep) inside this worker.
        env: Extra environment, e.g. ``REDIS_URL`` or ``JOBS_SWEEP_SECONDS``.
    """

    def __init__(
        self,
        queues: str | None = None,
        pool: str = "solo",
        *,
        beat: bool = False,
        env: dict[str, str] | None = None,
        name: str | None = None,
    ) -> None:
        from django.conf import settings

        from wildweb.celery import QUEUES, worker_command

        self.log_path = Path(tempfile.mkstemp(prefix="celery-worker-", suffix=".log")[1])
        environment = {
            **os.environ,
            "DATABASE_URL": _test_database_url(),
            "PYTHONUNBUFFERED": "1",
            "MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "PRIVATE_ROOT": str(settings.PRIVATE_ROOT),
            "CELERY_KEY_PREFIX": CELERY_KEY_PREFIX,
            **(env or {}),
        }
        command = worker_command(
            queues=queues or ",".join(QUEUES), pool=pool, quiet_cluster=True, name=name
        )
        if beat:
            schedule = tempfile.mkstemp(prefix="celerybeat-", suffix=".db")[1]
            os.unlink(schedule)  # beat creates its own shelve file
            command += ["--beat", "--schedule", schedule]
        self.process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=environment,
            stdout=self.log_path.open("w"),
            stderr=subprocess.STDOUT,
        )
        self.wait_for("ready", timeout=60)

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if self.process.poll() is not None:
                raise RuntimeError(f"celery worker exited:\n{self.log()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker log never showed {text!r}:\n{self.log()}")
            time.sleep(0.2)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture
def celery_worker(transactional_db) -> Iterator[CeleryWorker]:  # noqa: ANN001
    """A worker for one test; the test's data must be committed, hence transactional_db."""
    from wildweb.celery import app

    app.control.purge()  # tasks left by earlier tests must not run against this one's data
    worker = CeleryWorker()
    yield worker
    worker.stop()
