"""Uploading a sighting through the web form and the API."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from catalogue.models import Annotation, Encounter, Image
from tests.factories import SpeciesFactory, UserFactory
from tests.helpers import exif_bytes, jpeg_bytes

pytestmark = pytest.mark.django_db


def photo(name: str, data: bytes, content_type: str = "image/jpeg") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type=content_type)


def stored_files(settings) -> list[Path]:  # noqa: ANN001
    return [p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file()]


@pytest.fixture
def volunteer_client(client):  # noqa: ANN001, ANN201
    client.force_login(UserFactory(role="volunteer"))
    return client


def form_post(client, species, photos, follow=False, **fields):  # noqa: ANN001, ANN003, ANN201
    data = {
        "species": species.pk,
        "photos": photos,
        "observed_at": "2025-05-04T10:00",
        "latitude": "",
        "longitude": "",
        "notes": "",
        "bboxes": "",
        **fields,
    }
    return client.post(reverse("sighting-create"), data, follow=follow)


def test_volunteer_submits_sighting_with_two_photos(volunteer_client, settings) -> None:  # noqa: ANN001
    species = SpeciesFactory()
    response = form_post(
        volunteer_client,
        species,
        [
            photo("a.jpg", jpeg_bytes(color=(10, 20, 30))),
            photo(
                "b.jpg",
                jpeg_bytes(size=(80, 40), color=(90, 20, 30), exif=exif_bytes(orientation=6)),
            ),
        ],
        latitude="-1.25",
        longitude="36.8",
    )
    encounter = Encounter.objects.get()
    assert response.status_code == 302
    assert response.url == reverse("sighting-detail", args=[encounter.pk])
    images = list(encounter.images.order_by("original_filename"))
    assert [(i.width, i.height) for i in images] == [(64, 48), (40, 80)]
    annotations = Annotation.objects.order_by("image__original_filename")
    assert [a.bbox for a in annotations] == [(0, 0, 64, 48), (0, 0, 40, 80)]
    assert (encounter.latitude, encounter.longitude) == (-1.25, 36.8)
    assert len(stored_files(settings)) == 2
    page = volunteer_client.get(response.url)
    assert page.status_code == 200 and b"a.jpg" in page.content


def test_drawn_bbox_is_stored_on_the_annotation(volunteer_client) -> None:  # noqa: ANN001
    form_post(
        volunteer_client,
        SpeciesFactory(),
        [photo("a.jpg", jpeg_bytes(size=(100, 80)))],
        bboxes="[[10, 5, 50, 40]]",
    )
    assert Annotation.objects.get().bbox == (10, 5, 50, 40)


def test_bbox_outside_photo_is_rejected(volunteer_client, settings) -> None:  # noqa: ANN001
    response = form_post(
        volunteer_client,
        SpeciesFactory(),
        [photo("a.jpg", jpeg_bytes(size=(100, 80)))],
        bboxes="[[90, 5, 50, 40]]",
    )
    assert response.status_code == 400
    assert "lies outside the 100×80 photo" in response.content.decode()
    assert not Encounter.objects.exists() and not stored_files(settings)


def test_date_and_place_default_to_exif(volunteer_client) -> None:  # noqa: ANN001
    exif = exif_bytes(taken="2023:02:03 04:05:06", gps=(12.5, -70.25))
    form_post(
        volunteer_client, SpeciesFactory(), [photo("a.jpg", jpeg_bytes(exif=exif))], observed_at=""
    )
    encounter = Encounter.objects.get()
    assert encounter.observed_at.isoformat().startswith("2023-02-03T04:05:06")
    assert encounter.latitude == pytest.approx(12.5, abs=1e-4)
    assert encounter.longitude == pytest.approx(-70.25, abs=1e-4)


def test_missing_date_without_exif_asks_for_one(volunteer_client) -> None:  # noqa: ANN001
    response = form_post(
        volunteer_client, SpeciesFactory(), [photo("a.jpg", jpeg_bytes())], observed_at=""
    )
    assert response.status_code == 400
    assert "The photos carry no date" in response.content.decode()
    assert not Encounter.objects.exists()


@pytest.mark.parametrize(
    "bad_name, bad_bytes, message",
    [
        ("empty.jpg", b"", "the file is empty"),
        ("page.jpg", b"<html><body>hi</body></html>", "this is not a photo"),
        ("cut.jpg", jpeg_bytes(size=(300, 300))[:400], "damaged or truncated"),
    ],
)
def test_one_bad_photo_saves_nothing_of_the_sighting(
    volunteer_client,
    settings,
    bad_name,  # noqa: ANN001
    bad_bytes,
    message,
) -> None:
    response = form_post(
        volunteer_client,
        SpeciesFactory(),
        [photo("good.jpg", jpeg_bytes()), photo(bad_name, bad_bytes)],
    )
    assert response.status_code == 400
    assert message in response.content.decode()
    assert Encounter.objects.count() == Image.objects.count() == Annotation.objects.count() == 0
    assert stored_files(settings) == []


def test_oversized_file_is_refused(volunteer_client, settings) -> None:  # noqa: ANN001
    settings.MAX_UPLOAD_BYTES = 500
    response = form_post(
        volunteer_client, SpeciesFactory(), [photo("big.jpg", jpeg_bytes((300, 300)))]
    )
    assert response.status_code == 400
    assert "the limit is" in response.content.decode()
    assert not Encounter.objects.exists()


def test_duplicate_photo_links_existing_image_with_message(volunteer_client) -> None:  # noqa: ANN001
    species = SpeciesFactory()
    data = jpeg_bytes(color=(1, 2, 3))
    form_post(volunteer_client, species, [photo("first.jpg", data)])
    original = Image.objects.get()
    response = form_post(
        volunteer_client,
        species,
        [photo("again.jpg", data), photo("new.jpg", jpeg_bytes(color=(4, 5, 6)))],
        follow=True,
    )
    assert Image.objects.count() == 2  # only the new photo was stored
    assert (
        f"again.jpg is already in your sighting #{original.encounter_id}"
        in response.content.decode()
    )


def test_upload_of_only_duplicates_creates_no_sighting(volunteer_client) -> None:  # noqa: ANN001
    species = SpeciesFactory()
    data = jpeg_bytes(color=(7, 7, 7))
    form_post(volunteer_client, species, [photo("first.jpg", data)])
    response = form_post(volunteer_client, species, [photo("again.jpg", data)])
    assert Encounter.objects.count() == 1
    assert response.status_code == 302


def test_api_upload_creates_sighting(client) -> None:  # noqa: ANN001
    client.force_login(UserFactory(role="volunteer"))
    species = SpeciesFactory()
    response = client.post(
        reverse("api-sightings"),
        {
            "species": species.slug,
            "observed_at": "2025-01-02T03:04:05Z",
            "photos": [photo("a.jpg", jpeg_bytes(color=(3, 3, 3))), photo("b.jpg", jpeg_bytes())],
            "bboxes": "[null, [1, 2, 30, 20]]",
        },
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert len(body["sighting"]["images"]) == 2
    assert Annotation.objects.filter(bbox_w=30, bbox_h=20).count() == 1


def test_api_rejects_bad_photo_with_json_message(client, settings) -> None:  # noqa: ANN001
    client.force_login(UserFactory(role="volunteer"))
    response = client.post(
        reverse("api-sightings"),
        {
            "species": SpeciesFactory().slug,
            "observed_at": "2025-01-02T03:04:05Z",
            "photos": [photo("x.jpg", b"%PDF-1.4 not a photo")],
        },
    )
    assert response.status_code == 400
    assert "this is not a photo" in response.json()["detail"]
    assert not Encounter.objects.exists() and stored_files(settings) == []


def test_exif_prefill_endpoint_returns_date_and_place(volunteer_client) -> None:  # noqa: ANN001
    exif = exif_bytes(taken="2022:12:31 23:59:00", gps=(10.0, 20.0))
    response = volunteer_client.post(
        reverse("photo-exif"), {"photo": photo("a.jpg", jpeg_bytes(exif=exif))}
    )
    assert response.json()["observed_at"] == "2022-12-31T23:59"
    assert response.json()["latitude"] == pytest.approx(10.0, abs=1e-4)
