"""Correcting a photo's box from the review page: checked, then embedded and searched again."""

from __future__ import annotations

import pytest
from django.urls import reverse

from identification.models import Embedding, EmbeddingJob, Identification
from identification.services.models import zero_shot_version
from identification.services.pipeline import species_register
from tests.factories import AnnotationFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def photo(db):  # noqa: ANN001, ANN201
    """A 64×48 photo, embedded, with candidates waiting for review."""
    annotation = AnnotationFactory(image__encounter__species=species_register(name="Lynx"))
    version = zero_shot_version()
    Embedding.objects.create(
        annotation=annotation, model_version=version, species=annotation.species,
        vector=[1.0] + [0.0] * (version.embedding_dim - 1),
    )  # fmt: skip
    EmbeddingJob.objects.create(
        annotation=annotation, model_version=version, state=EmbeddingJob.State.DONE
    )
    Identification.objects.create(annotation=annotation, state=Identification.State.READY)
    return annotation


@pytest.mark.parametrize(
    "box, message",
    [
        (("nan", "0", "10", "10"), "must be a finite number"),
        (("inf", "0", "10", "10"), "must be a finite number"),
        (("50", "0", "30", "10"), "outside the 64×48 photo"),
        (("-1", "0", "10", "10"), "starts outside the photo"),
        (("0", "0", "0", "10"), "smaller than one pixel"),
        (("a", "0", "10", "10"), "must be a number"),
    ],
)
def test_a_bad_box_is_refused_with_a_message_and_changes_nothing(
    client, photo, box, message
) -> None:  # noqa: ANN001
    client.force_login(UserFactory(role="expert"))
    fields = dict(zip(("bbox_x", "bbox_y", "bbox_w", "bbox_h"), box))
    response = client.post(reverse("photo-edit", args=[photo.pk]), fields, follow=True)
    assert message in response.content.decode()
    photo.refresh_from_db()
    assert photo.bbox == (0, 0, 64, 48)
    assert Embedding.objects.filter(annotation=photo).exists()


def test_a_redrawn_box_is_stored_and_the_photo_is_embedded_again(
    client, photo, django_capture_on_commit_callbacks
) -> None:  # noqa: ANN001
    client.force_login(UserFactory(role="expert"))
    fields = {"bbox_x": "8", "bbox_y": "4", "bbox_w": "40", "bbox_h": "30", "viewpoint": ""}
    with django_capture_on_commit_callbacks() as callbacks:
        client.post(reverse("photo-edit", args=[photo.pk]), fields)
    photo.refresh_from_db()
    assert photo.bbox == (8, 4, 40, 30)
    assert not Embedding.objects.filter(annotation=photo).exists()  # the old crop's vector
    job = EmbeddingJob.objects.get(annotation=photo)
    assert job.state == EmbeddingJob.State.QUEUED and len(callbacks) == 1
    assert Identification.objects.get(annotation=photo).state == Identification.State.QUEUED
