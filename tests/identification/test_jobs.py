"""Every job ends done or failed with a reason; one bad photo fails alone."""

from __future__ import annotations

import socket

import pytest
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone

from catalogue.models import Annotation, Encounter
from catalogue.services.sightings import UploadedPhoto
from conftest import CeleryWorker
from identification.models import Embedding, EmbeddingJob, Identification
from identification.services.embedding import embedding_jobs_recover
from identification.services.embedding_run import embedding_jobs_run
from identification.services.matching import (
    annotation_identify,
    identification_claim,
    identifications_recover,
)
from identification.services.models import zero_shot_version
from identification.services.pipeline import sighting_submit, species_register
from identification.tasks import annotation_identify_task
from notifications.models import Notification
from tests.factories import AnnotationFactory, IndividualFactory, UserFactory, random_embeddings
from tests.helpers import jpeg_bytes, wait_until
from wildweb.jobs import task_send, worker_name

pytestmark = pytest.mark.django_db


def _report(user, species, colours, django_capture_on_commit_callbacks):  # noqa: ANN001, ANN202
    """A sighting whose jobs are recorded but not sent (the test runs them in-process)."""
    photos = [
        UploadedPhoto(filename=f"p{i}.jpg", data=jpeg_bytes(size=(80, 60), color=colour))
        for i, colour in enumerate(colours)
    ]
    with django_capture_on_commit_callbacks(execute=False):
        result = sighting_submit(
            submitted_by=user, species=species, photos=photos, observed_at=timezone.now()
        )
    annotations = list(Annotation.objects.filter(image__encounter=result.encounter))
    jobs = list(EmbeddingJob.objects.filter(annotation__in=annotations).order_by("pk"))
    return result.encounter, annotations, jobs


def test_nan_box_fails_only_its_photo_and_the_sighting_says_why(
    client, django_capture_on_commit_callbacks
) -> None:  # noqa: ANN001
    user = UserFactory(role="volunteer")
    species = species_register(name="Dog")
    encounter, (bad, good, other), jobs = _report(
        user,
        species,
        [(10, 10, 10), (200, 20, 20), (20, 200, 20)],
        django_capture_on_commit_callbacks,
    )
    # A row written before the strict validator existed, or by a buggy import.
    Annotation.objects.filter(pk=bad.pk).update(bbox_x=float("nan"))

    embedded = embedding_jobs_run(job_ids=[job.pk for job in jobs])

    assert sorted(embedded) == sorted([good.pk, other.pk])
    states = dict(EmbeddingJob.objects.values_list("annotation_id", "state"))
    assert states == {bad.pk: "failed", good.pk: "done", other.pk: "done"}
    bad_job = EmbeddingJob.objects.get(annotation=bad)
    assert "NaN" in bad_job.error and "could not be" in bad_job.error
    assert Embedding.objects.filter(annotation__in=[good, other]).count() == 2
    failed = Identification.objects.get(annotation=bad)
    assert failed.state == "failed" and failed.error == bad_job.error

    # "Candidates ready" only once every photo is finished.
    annotation_identify(annotation_id=good.pk)
    encounter.refresh_from_db()
    assert encounter.status == Encounter.Status.PROCESSING
    annotation_identify(annotation_id=other.pk)
    encounter.refresh_from_db()
    assert encounter.status == Encounter.Status.AWAITING_REVIEW

    client.force_login(user)
    page = client.get(reverse("sighting-detail", args=[encounter.pk])).content.decode()
    assert "This photo could not be identified" in page and "NaN" in page
    mine = client.get(reverse("my-sightings")).content.decode()
    assert "1 photo(s) failed" in mine


def test_a_sighting_whose_every_photo_fails_says_so(django_capture_on_commit_callbacks) -> None:  # noqa: ANN001
    species = species_register(name="Dog")
    encounter, annotations, jobs = _report(
        UserFactory(role="volunteer"),
        species,
        [(1, 2, 3), (4, 5, 6)],
        django_capture_on_commit_callbacks,
    )
    Annotation.objects.filter(pk__in=[a.pk for a in annotations]).update(bbox_w=float("inf"))
    assert embedding_jobs_run(job_ids=[job.pk for job in jobs]) == []
    encounter.refresh_from_db()
    assert encounter.status == Encounter.Status.FAILED
    assert not Identification.objects.exclude(state="failed").exists()


def test_a_job_whose_worker_died_is_sent_again_then_fails_after_its_attempts(
    settings, django_capture_on_commit_callbacks
) -> None:  # noqa: ANN001
    species = species_register(name="Dog")
    encounter, (annotation,), (job,) = _report(
        UserFactory(role="volunteer"), species, [(9, 9, 9)], django_capture_on_commit_callbacks
    )
    dead = f"{socket.gethostname()}:{2**22 + 12345}"  # above pid_max: never a live process
    for attempt in range(1, settings.JOBS_MAX_ATTEMPTS + 1):
        EmbeddingJob.objects.filter(pk=job.pk).update(
            state="running", worker=dead, started_at=timezone.now(), attempts=attempt
        )
        embedding_jobs_recover()  # frees it and sends it again
        job.refresh_from_db()
        assert job.state == "queued" and "stopped" in job.error
    embedding_jobs_run(job_ids=[job.pk])  # the claim refuses a job started too often
    job.refresh_from_db()
    assert job.state == "failed" and f"after {settings.JOBS_MAX_ATTEMPTS} tries" in job.error
    identifications_recover()
    assert Identification.objects.get(annotation=annotation).state == "failed"
    encounter.refresh_from_db()
    assert encounter.status == Encounter.Status.FAILED


def test_a_batch_not_full_takes_other_queued_jobs_of_its_queue(
    django_capture_on_commit_callbacks,
) -> None:  # noqa: ANN001
    """A backlog of one-photo sightings is embedded many at a time, oldest first."""
    species = species_register(name="Dog")
    user = UserFactory(role="volunteer")
    reported = [
        _report(user, species, [colour], django_capture_on_commit_callbacks)
        for colour in [(1, 1, 1), (2, 2, 2)]
    ]
    EmbeddingJob.objects.filter(annotation__image__encounter=reported[1][0]).update(queue="bulk")
    first_job = reported[0][2][0]
    other = AnnotationFactory(image__encounter__species=species)  # a third, on the same queue
    late = EmbeddingJob.objects.create(
        annotation=other, model_version=first_job.model_version, queue=first_job.queue
    )

    embedded = embedding_jobs_run(job_ids=[first_job.pk])  # one message, two jobs of its queue

    assert sorted(embedded) == sorted([first_job.annotation_id, late.annotation_id])
    assert EmbeddingJob.objects.get(annotation=reported[1][1][0]).state == "queued"  # bulk's


def _searchable_sighting() -> Annotation:
    """A reported, embedded animal, queued for its search, and a gallery of three known ones."""
    species = species_register(name="Dog")
    version = zero_shot_version()
    query = AnnotationFactory(
        image__encounter__species=species,
        image__encounter__submitted_by=UserFactory(role="volunteer"),
        image__encounter__status=Encounter.Status.PROCESSING,
    )
    gallery = [
        AnnotationFactory(
            image__encounter__species=species, individual=IndividualFactory(species=species)
        )
        for _ in range(3)
    ]
    random_embeddings([query, *gallery], species=species, version=version)
    Identification.objects.create(annotation=query)
    return query


def test_a_search_is_claimed_by_one_worker_and_the_other_changes_nothing() -> None:
    query = _searchable_sighting()
    read_by_first, read_by_second = (Identification.objects.get(annotation=query) for _ in "ab")

    claimed = identification_claim(identification=read_by_first)

    assert claimed is not None and claimed.state == "running"
    assert claimed.worker == worker_name() and claimed.attempts == 1
    row = Identification.objects.filter(pk=claimed.pk)
    before = row.values().get()
    assert identification_claim(identification=read_by_second) is None  # read before the claim
    assert identification_claim(identification=claimed) is None  # running: not claimed again
    assert row.values().get() == before

    # A search sent again while a worker runs it leaves the row and the candidates alone.
    Identification.objects.filter(pk=claimed.pk).update(worker="elsewhere:1")
    before = row.values().get()
    assert annotation_identify(annotation_id=query.pk).state == "running"
    assert row.values().get() == before
    assert not claimed.candidates.exists()


def _sessions_waiting_for_a_lock() -> int:
    """How many database sessions wait for a lock (``pg_locks`` is read live, unlike
    ``pg_stat_activity``, which a transaction reads once)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(DISTINCT pid) FROM pg_locks WHERE NOT granted")
        return cursor.fetchone()[0]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_workers_sent_the_same_search_at_once_run_it_once() -> None:
    from wildweb.celery import app

    app.control.purge()
    query = _searchable_sighting()
    # One worker per queue, so each takes one of the two messages.
    workers = [CeleryWorker(queues=queue, name=queue) for queue in ("identify", "bulk")]
    try:
        # Holding the row keeps both workers at their claim until both have read the row.
        with transaction.atomic():
            Identification.objects.select_for_update().get(annotation=query)
            for queue in ("identify", "bulk"):
                assert task_send(annotation_identify_task, query.pk, queue=queue)
            # Well within the statement timeout (30 s) the waiting workers run under.
            wait_until(lambda: _sessions_waiting_for_a_lock() == 2, timeout=25)
        for worker in workers:
            worker.wait_for("succeeded", timeout=120)
    finally:
        for worker in workers:
            worker.stop()
    identification = Identification.objects.get(annotation=query)
    assert identification.state == "ready" and identification.attempts == 1
    assert identification.candidates.count() == 3
    assert Notification.objects.filter(encounter=query.image.encounter_id).count() == 1
    assert Encounter.objects.get(pk=query.image.encounter_id).status == "awaiting_review"
