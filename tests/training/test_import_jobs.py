"""Imports are jobs: the upload answers at once, a bulk worker plans and stores, the sweep
recovers a killed worker's import, and the admin follows it on its page."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection, connections
from django.urls import reverse

from catalogue.models import Annotation, Image
from identification.services.pipeline import species_register
from notifications.models import Notification
from tests.factories import UserFactory
from tests.helpers import imports_worker_run, jpeg_bytes
from training.models import DatasetImport
from training.services.imports import (
    dataset_import_confirm,
    dataset_import_execute,
    dataset_import_upload,
    dataset_imports_recover,
)
from wildweb.tasks import jobs_sweep

State = DatasetImport.State


def _dataset_zip(n_photos: int, n_individuals: int = 5) -> bytes:
    rows = ["image_id,identity,path"]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for n in range(n_photos):
            path = f"images/{n}.jpg"
            archive.writestr(path, jpeg_bytes(size=(64 + n % 50, 48), color=(n % 256, 90, 30)))
            rows.append(f"{n},I{n % n_individuals},{path}")
        archive.writestr("metadata.csv", "\n".join(rows) + "\n")
    return buffer.getvalue()


def _wait(condition, timeout: float = 180, what: str = "") -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.2)


@pytest.mark.django_db
def test_the_upload_only_keeps_the_file_and_the_page_follows_the_job_to_the_end(client) -> None:  # noqa: ANN001
    admin = UserFactory(role="admin", username="ada")
    species = species_register(name="Zebra")
    client.force_login(admin)
    response = client.post(
        reverse("training-import", args=[species.pk]),
        {"file": SimpleUploadedFile("zebras.zip", _dataset_zip(6))},
    )
    job = DatasetImport.objects.get()
    assert response.url == reverse("training-import-detail", args=[job.pk])
    # Nothing was opened yet: the dry run is a worker's job.
    assert job.state == State.QUEUED and job.report == {} and job.started_by == admin
    page = client.get(response.url).content.decode()
    assert "Queued" in page and 'hx-trigger="every 2s"' in page

    imports_worker_run()  # the dry run
    job.refresh_from_db()
    assert job.state == State.AWAITING_CONFIRMATION and job.rows_total == 6
    assert not Image.objects.exists()
    page = client.get(response.url).content.decode()
    assert 'id="import-report"' in page and "hx-trigger" not in page  # waits for the admin

    client.post(reverse("training-import-confirm", args=[job.pk]))
    assert DatasetImport.objects.get().state == State.STORING
    imports_worker_run()
    job.refresh_from_db()
    assert job.state == State.EMBEDDING and job.rows_stored == 6
    assert job.result["annotations_created"] == 6 and Annotation.objects.count() == 6
    assert not Path(job.folder).exists()  # the upload is gone once stored

    species_page = client.get(reverse("training-species", args=[species.pk])).content.decode()
    assert f'data-import="{job.pk}"' in species_page and "ada" in species_page
    assert "6 animals, 5 new individuals" in species_page


@pytest.mark.django_db
def test_a_discarded_import_stores_nothing_and_removes_its_upload(client) -> None:  # noqa: ANN001
    species = species_register(name="Zebra")
    client.force_login(UserFactory(role="admin"))
    client.post(
        reverse("training-import", args=[species.pk]),
        {"file": SimpleUploadedFile("zebras.zip", _dataset_zip(3))},
    )
    imports_worker_run()
    job = DatasetImport.objects.get()
    client.post(reverse("training-import-confirm", args=[job.pk]), {"discard": "1"})
    job.refresh_from_db()
    assert job.state == State.DISCARDED and not Path(job.folder).exists()
    # A confirmation after the discard is refused, not carried out.
    page = client.post(reverse("training-import-confirm", args=[job.pk]), follow=True)
    assert "not waiting for a confirmation" in page.content.decode()
    imports_worker_run()
    assert not Image.objects.exists()


@pytest.mark.django_db
def test_a_second_message_for_the_same_step_does_nothing() -> None:
    species = species_register(name="Zebra")
    upload = SimpleUploadedFile("zebras.zip", _dataset_zip(4))
    job = dataset_import_upload(species=species, uploaded_file=upload, started_by=None)
    dataset_import_execute(import_id=job.pk)
    dataset_import_confirm(job=job, send=False)
    dataset_import_execute(import_id=job.pk)
    dataset_import_execute(import_id=job.pk)  # the sweep's duplicate, arriving late
    assert Annotation.objects.count() == 4
    assert DatasetImport.objects.get().attempts == 1


@pytest.mark.django_db
def test_an_import_whose_worker_keeps_dying_fails_with_the_reason(settings) -> None:
    species = species_register(name="Zebra")
    admin = UserFactory(role="admin")
    dead = _pid_that_exited()
    job = DatasetImport.objects.create(
        species=species,
        species_name="Zebra",
        source="/nonexistent",
        folder="/nonexistent",
        state=State.STORING,
        worker=f"{socket.gethostname()}:{dead}",
        attempts=1,
        started_by=admin,
    )
    dataset_imports_recover()
    job.refresh_from_db()
    assert job.state == State.STORING and job.worker == ""  # freed for the next worker

    DatasetImport.objects.filter(pk=job.pk).update(
        worker=f"{socket.gethostname()}:{dead}", attempts=settings.JOBS_MAX_ATTEMPTS
    )
    dataset_imports_recover()
    job.refresh_from_db()
    assert job.state == State.FAILED
    assert "worker was lost 3 times during storing; nothing was stored" in job.error
    told = Notification.objects.get(user=admin, kind=Notification.Kind.IMPORT_FINISHED)
    assert "failed" in told.message and told.link.endswith(f"/imports/{job.pk}/")


def _pid_that_exited() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.mark.slow
def test_a_bulk_worker_killed_mid_store_leaves_nothing_and_the_next_stores_every_row_once(
    client,
    transactional_db,
    settings,  # noqa: ANN001
) -> None:
    """The store is one transaction: the test holds a lock the store needs after every photo
    row is written, kills the worker while it waits there, and lets the sweep hand the job on."""
    from conftest import CeleryWorker
    from wildweb.celery import app

    app.control.purge()
    admin = UserFactory(role="admin")
    species = species_register(name="Zebra")
    client.force_login(admin)
    response = client.post(
        reverse("training-import", args=[species.pk]),
        {"file": SimpleUploadedFile("zebras.zip", _dataset_zip(40))},
    )
    assert response.status_code == 302
    job = DatasetImport.objects.get()
    worker = CeleryWorker(queues="bulk")
    try:
        _wait(lambda: _state(job) == State.AWAITING_CONFIRMATION, what="dry run")
        lock_taken, release = threading.Event(), threading.Event()
        locker = threading.Thread(target=_hold_embedding_job_lock, args=(lock_taken, release))
        locker.start()
        lock_taken.wait(30)
        client.post(reverse("training-import-confirm", args=[job.pk]))
        # The worker has written every row and waits for the lock, inside its transaction.
        _wait(_worker_waits_for_a_lock, what="worker blocked mid-store")
        os.kill(worker.process.pid, signal.SIGKILL)
        worker.process.wait(30)
        release.set()
        locker.join(30)
    finally:
        worker.stop()
    assert _state(job) == State.STORING
    assert not Image.objects.exists() and not Annotation.objects.exists()  # rolled back

    sent = jobs_sweep()["imports"]
    assert sent == 1 and DatasetImport.objects.get().worker == ""
    worker = CeleryWorker(queues="bulk")
    try:
        _wait(lambda: _state(job) in (State.EMBEDDING, State.DONE), what="stored again")
    finally:
        worker.stop()
    job.refresh_from_db()
    assert job.attempts == 2 and job.result["annotations_created"] == 40
    assert Annotation.objects.count() == Image.objects.count() == 40
    assert Image.objects.values("original_filename").distinct().count() == 40


def _state(job: DatasetImport) -> str:
    return DatasetImport.objects.values_list("state", flat=True).get(pk=job.pk)


def _hold_embedding_job_lock(taken: threading.Event, release: threading.Event) -> None:
    """Locks the table the store writes last (its embedding jobs), in its own connection."""
    from django.db import transaction

    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("LOCK TABLE identification_embeddingjob IN EXCLUSIVE MODE")
            taken.set()
            release.wait(240)
    finally:
        connection.close()


def _worker_waits_for_a_lock() -> bool:
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database()"
        )
        return cursor.fetchone()[0] > 0
