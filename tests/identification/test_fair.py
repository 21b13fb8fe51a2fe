"""Interactive work is served round-robin across uploaders, not first come, first served."""

from __future__ import annotations

import pytest
from django.utils import timezone

from catalogue.models import Encounter
from catalogue.services.sightings import UploadedPhoto
from conftest import CeleryWorker
from identification.models import Identification
from identification.services.pipeline import sighting_submit, species_register
from tests.factories import UserFactory
from tests.helpers import jpeg_bytes, wait_until


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
