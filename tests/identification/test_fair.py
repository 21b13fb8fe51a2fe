"""Interactive work is served round-robin across uploaders, not first come, first served."""

from __future__ import annotations

import threading
from datetime import timedelta

import numpy as np
import pytest
from django.db import connection, transaction
from django.utils import timezone

from catalogue.models import Encounter
from catalogue.services.sightings import UploadedPhoto
from conftest import CeleryWorker
from identification.models import Embedding, Identification
from identification.selectors.fair import jobs_fair_order
from identification.services.matching import identification_next_run
from identification.services.models import zero_shot_version
from identification.services.pipeline import sighting_submit, species_register
from tests.factories import AnnotationFactory, UserFactory
from tests.helpers import jpeg_bytes, wait_until


def _search(uploader, **fields) -> Identification:  # noqa: ANN001, ANN003
    annotation = AnnotationFactory(image__encounter__submitted_by=uploader)
    return Identification.objects.create(annotation=annotation, **fields)


@pytest.mark.django_db
def test_each_uploaders_nth_search_waits_for_everyones_earlier_ones_least_served_first() -> None:
    a, b, c = (UserFactory() for _ in "abc")
    _search(a, state="ready", started_at=timezone.now() - timedelta(minutes=1))  # a was served
    _search(b, state="ready", started_at=timezone.now(), queue="bulk")  # not on this queue
    a1, a2, a3, b1, b2, c1 = (_search(user) for user in (a, a, a, b, b, c))

    order = jobs_fair_order(waiting=Identification.objects.filter(state="queued"), queue="identify")

    # Never served (b, c: by arrival) before served longest ago (a), then the second turns.
    assert order == [b1.pk, c1.pk, a1.pk, b2.pk, a2.pk, a3.pk]


@pytest.mark.django_db(transaction=True)
def test_a_search_another_worker_is_claiming_is_skipped_not_waited_for() -> None:
    species = species_register(name="Dog")
    version = zero_shot_version()
    uploader = UserFactory(role="volunteer")
    first, second = (
        Identification.objects.create(
            annotation=AnnotationFactory(
                image__encounter__species=species, image__encounter__submitted_by=uploader
            )
        )
        for _ in "12"
    )
    for search in (first, second):
        Embedding.objects.create(
            annotation=search.annotation,
            model_version=version,
            species=species,
            vector=np.eye(version.embedding_dim)[0].tolist(),
        )
    locked, release = threading.Event(), threading.Event()

    def other_worker_claiming() -> None:
        with transaction.atomic():
            Identification.objects.select_for_update().get(pk=first.pk)
            locked.set()
            release.wait(timeout=20)
        connection.close()

    thread = threading.Thread(target=other_worker_claiming)
    thread.start()
    assert locked.wait(timeout=10)
    try:
        ran = identification_next_run(queue="identify")
    finally:
        release.set()
        thread.join()

    assert ran is not None and ran.pk == second.pk and ran.state == "ready"
    assert Identification.objects.get(pk=first.pk).state == "queued"


def _post_sightings(uploader, species, count: int, shade: int) -> list[Encounter]:  # noqa: ANN001
    return [
        sighting_submit(
            submitted_by=uploader,
            species=species,
            photos=[
                UploadedPhoto(
                    filename=f"{shade}-{index}.jpg",
                    data=jpeg_bytes(size=(48, 36), color=(shade, 10 * index, 90)),
                )
            ],
            observed_at=timezone.now(),
        ).encounter
        for index in range(count)
    ]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_new_uploaders_first_sighting_is_done_before_a_flooding_uploaders_fifth(
    settings,  # noqa: ANN001
) -> None:
    from wildweb.celery import app

    app.control.purge()
    settings.INTERACTIVE_PENDING_SIGHTINGS = 100  # all of them on the interactive queue
    species = species_register(name="Dog")
    a, b, c = (UserFactory(role="volunteer") for _ in "abc")
    # All 13 wait before the worker starts, so the order is the scheduler's alone.
    sightings = {
        "a": _post_sightings(a, species, 6, shade=40),
        "b": _post_sightings(b, species, 6, shade=120),
        "c": _post_sightings(c, species, 1, shade=200),
    }
    searches = Identification.objects.filter(annotation__image__encounter__species=species)
    assert searches.filter(queue="identify").count() == 13
    worker = CeleryWorker(queues="identify", name="identify")
    try:
        wait_until(lambda: searches.filter(state="ready").count() == 13, timeout=240)
    finally:
        worker.stop()

    def finished(encounter: Encounter) -> object:
        return searches.get(annotation__image__encounter=encounter).updated_at

    assert finished(sightings["c"][0]) < finished(sightings["a"][4])
    assert finished(sightings["c"][0]) < finished(sightings["b"][4])
    # Each uploader's own sightings still come back in the order they were sent.
    for encounters in sightings.values():
        done = [finished(encounter) for encounter in encounters]
        assert done == sorted(done)


@pytest.mark.django_db
def test_on_a_fair_queue_any_message_finishes_a_waiting_search_before_embedding_more() -> None:
    """An embedding message that arrives while a search waits runs the search; the search's
    own nudge, finding none waiting, then embeds the batch. No message is tied to its job."""
    from identification.models import EmbeddingJob
    from identification.services.fair import embedding_message_run, fair_turn_run

    species = species_register(name="Dog")
    version = zero_shot_version()
    waiting = Identification.objects.create(
        annotation=AnnotationFactory(
            image__encounter__species=species,
            image__encounter__submitted_by=UserFactory(role="volunteer"),
        )
    )
    Embedding.objects.create(
        annotation=waiting.annotation,
        model_version=version,
        species=species,
        vector=np.eye(version.embedding_dim)[0].tolist(),
    )
    (newcomer,) = _post_sightings(UserFactory(role="volunteer"), species, 1, shade=200)
    job = EmbeddingJob.objects.get(annotation__image__encounter=newcomer)
    assert job.queue == "identify" and job.state == "queued"

    embedding_message_run(job_ids=[job.pk])  # the newcomer's embedding message

    waiting.refresh_from_db()
    job.refresh_from_db()
    assert waiting.state == "ready" and job.state == "queued"
    assert fair_turn_run(queue="identify") == "embedding"  # the search's nudge
    job.refresh_from_db()
    assert job.state == "done"
    assert fair_turn_run(queue="identify") == "search"  # the newcomer's search, now embedded
    assert Identification.objects.get(annotation__image__encounter=newcomer).state == "ready"
    assert fair_turn_run(queue="identify") is None
