"""Viewpoint: set at upload and in the review; a species setting keeps the search to
compatible viewpoints (a left flank is never compared with a right flank)."""

from __future__ import annotations

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from catalogue.models import Annotation, Encounter
from identification.models import Embedding, Identification, SpeciesModel
from identification.selectors.search import SearchScope, nearest_identified_annotations
from identification.services.matching import annotation_identify
from identification.services.models import zero_shot_version
from identification.services.pipeline import species_register
from tests.factories import AnnotationFactory, IndividualFactory, SpeciesFactory, UserFactory
from tests.helpers import jpeg_bytes

pytestmark = pytest.mark.django_db
DIM = 1280


def unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


@pytest.fixture
def zebras(db):  # noqa: ANN001, ANN201
    """Three known zebras, each photographed from one side; the right flank is the closest."""
    species = species_register(name="Zebra", viewpoints=["left", "right"])
    SpeciesModel.objects.filter(species=species).update(ranking_method="embedding")
    rng = np.random.default_rng(11)
    query = unit(rng.normal(size=DIM))
    gallery = {}
    for code, viewpoint, noise in (
        ("RIGHT", "right", 0.2),
        ("LEFT", "left", 0.6),
        ("ANY", "", 0.9),
    ):
        annotation = AnnotationFactory(
            image__encounter__species=species,
            individual=IndividualFactory(species=species, code=code),
            viewpoint=viewpoint,
        )
        Embedding.objects.create(
            annotation=annotation,
            model_version=zero_shot_version(),
            species=species,
            vector=unit(query + noise * rng.normal(size=DIM) / np.sqrt(DIM)).tolist(),
        )
        gallery[code] = annotation
    photo = AnnotationFactory(image__encounter__species=species, viewpoint="left")
    Embedding.objects.create(
        annotation=photo, model_version=zero_shot_version(), species=species, vector=query.tolist()
    )
    return species, photo, gallery


def test_viewpoint_scope_keeps_the_same_viewpoint_and_photos_without_one(zebras) -> None:  # noqa: ANN001
    species, photo, gallery = zebras
    version = zero_shot_version()
    vector = np.asarray(Embedding.objects.get(annotation=photo).vector)

    def found(scope: SearchScope | None) -> list[int]:
        hits = nearest_identified_annotations(
            species_id=species.pk, version_id=version.pk, dim=DIM, vector=vector, k=3,
            exclude_annotation_ids={photo.pk}, scope=scope,
        )  # fmt: skip
        return [hit.annotation_id for hit in hits]

    assert found(None) == [gallery[c].pk for c in ("RIGHT", "LEFT", "ANY")]
    assert found(SearchScope(viewpoint="left")) == [gallery[c].pk for c in ("LEFT", "ANY")]
    assert found(SearchScope(viewpoint="right")) == [gallery[c].pk for c in ("RIGHT", "ANY")]


@pytest.mark.parametrize(
    "same_viewpoint_only, query_viewpoint, expected",
    [
        (True, "left", ["LEFT", "ANY"]),  # never the right flank
        (True, "", ["RIGHT", "LEFT", "ANY"]),  # a photo without a viewpoint meets all
        (False, "left", ["RIGHT", "LEFT", "ANY"]),  # the setting is off
    ],
)
def test_species_setting_restricts_the_candidates_to_compatible_viewpoints(
    zebras, same_viewpoint_only, query_viewpoint, expected
) -> None:  # noqa: ANN001
    species, photo, _ = zebras
    species.same_viewpoint_only = same_viewpoint_only
    species.save()
    Annotation.objects.filter(pk=photo.pk).update(viewpoint=query_viewpoint)
    identification = annotation_identify(annotation_id=photo.pk)
    assert [c.individual.code for c in identification.candidates.all()] == expected


def test_viewpoint_given_at_upload_is_set_on_every_photo(client) -> None:  # noqa: ANN001
    species = SpeciesFactory(name="Giraffe", viewpoints=["left", "right"])
    client.force_login(UserFactory(role="volunteer"))
    data = {
        "species": species.pk,
        "observed_at": "2025-05-04T10:00",
        "viewpoint": "left",
        "photos": [
            SimpleUploadedFile(f"g{n}.jpg", jpeg_bytes(color=(n * 50, 9, 9)), "image/jpeg")
            for n in (1, 2)
        ],
    }
    response = client.post(reverse("sighting-create"), data)
    assert response.status_code == 302
    assert list(Annotation.objects.values_list("viewpoint", flat=True)) == ["left", "left"]

    data["viewpoint"] = "belly"
    data["photos"] = [SimpleUploadedFile("g3.jpg", jpeg_bytes(color=(1, 2, 3)), "image/jpeg")]
    response = client.post(reverse("sighting-create"), data)
    assert response.status_code == 400 and "none of them" in response.content.decode()
    assert Encounter.objects.count() == 1


def test_expert_corrects_a_viewpoint_in_the_review_and_the_animal_is_searched_again(
    client, zebras, django_capture_on_commit_callbacks
) -> None:  # noqa: ANN001
    _, photo, _ = zebras
    Identification.objects.create(annotation=photo, state=Identification.State.READY)
    client.force_login(UserFactory(role="volunteer"))
    client.post(reverse("photo-edit", args=[photo.pk]), {"viewpoint": "right"})
    photo.refresh_from_db()
    assert photo.viewpoint == "left"  # volunteers may not
    client.force_login(UserFactory(role="expert"))
    response = client.post(
        reverse("photo-edit", args=[photo.pk]), {"viewpoint": "front"}, follow=True
    )
    assert "not a viewpoint of Zebra" in response.content.decode()
    with django_capture_on_commit_callbacks() as callbacks:
        client.post(reverse("photo-edit", args=[photo.pk]), {"viewpoint": "right"})
    photo.refresh_from_db()
    assert photo.viewpoint == "right" and len(callbacks) == 1  # the search is queued again
