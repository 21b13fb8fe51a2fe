"""The bad-input catalogue: every kind of bad upload gets a clear 400 and writes nothing.

Each case goes through the web form and through the API. Imports have their own catalogue
in ``tests/training/test_bad_imports.py``.
"""

from __future__ import annotations

import html
import io
import json
import re
from datetime import date, timedelta
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image as PILImage

from catalogue.models import Annotation, Encounter, Image, Individual
from identification.models import IndividualMerge
from identification.services.decisions import individual_merge, merge_revert
from tests.factories import (
    AnnotationFactory,
    IndividualFactory,
    SpeciesFactory,
    UserFactory,
)
from tests.helpers import jpeg_bytes

pytestmark = pytest.mark.django_db

GOOD = jpeg_bytes(size=(100, 80), color=(30, 60, 90))
IN_TEN_DAYS = (date.today() + timedelta(days=10)).isoformat()


def _png_bomb() -> bytes:
    """A tiny file that decodes to 100 megapixels."""
    buffer = io.BytesIO()
    PILImage.new("L", (10_000, 10_000)).save(buffer, "PNG")
    return buffer.getvalue()


# (case id, photos as (name, bytes), extra fields, a pattern of the expected message; the API
# refuses NaN already as JSON, the form as a number)
CASES = [
    ("corrupt-image", [("c.jpg", b"\xff\xd8\xff\xe0" + b"\x00garbage" * 50)], {}, "damaged"),
    ("truncated-jpeg", [("t.jpg", GOOD[: len(GOOD) // 2])], {}, "damaged or truncated"),
    ("not-an-image", [("x.jpg", b"%PDF-1.4 not a photo")], {}, "not a photo"),
    ("empty-file", [("e.jpg", b"")], {}, "empty"),
    ("decompression-bomb", [("bomb.png", "bomb")], {}, "too large"),
    ("nan-bbox", [("a.jpg", GOOD)], {"bboxes": "[[NaN, 0, 10, 10]]"}, "finite|valid JSON"),
    ("infinite-bbox", [("a.jpg", GOOD)], {"bboxes": "[[0, 0, Infinity, 10]]"}, "finite|valid JSON"),
    ("negative-bbox", [("a.jpg", GOOD)], {"bboxes": "[[-5, 0, 10, 10]]"}, "outside the photo"),
    ("zero-size-bbox", [("a.jpg", GOOD)], {"bboxes": "[[0, 0, 0, 10]]"}, "smaller than one"),
    ("bbox-outside-image", [("a.jpg", GOOD)], {"bboxes": "[[50, 0, 300, 10]]"}, "outside"),
    ("bbox-three-numbers", [("a.jpg", GOOD)], {"bboxes": "[[1, 2, 3]]"}, "4 numbers"),
    ("bbox-of-text", [("a.jpg", GOOD)], {"bboxes": '[["a", "b", "c", "d"]]'}, "numbers"),
    ("bboxes-not-json", [("a.jpg", GOOD)], {"bboxes": "[[1, 2"}, "could not be read|valid JSON"),
    ("bboxes-not-a-list", [("a.jpg", GOOD)], {"bboxes": '{"x": 1}'}, "list"),
    ("latitude-without-longitude", [("a.jpg", GOOD)], {"latitude": "10"}, "both latitude"),
    ("longitude-without-latitude", [("a.jpg", GOOD)], {"longitude": "10"}, "both latitude"),
    ("latitude-out-of-range", [("a.jpg", GOOD)], {"latitude": "91", "longitude": "0"}, "90"),
    ("longitude-out-of-range", [("a.jpg", GOOD)], {"latitude": "0", "longitude": "181"}, "180"),
    ("latitude-nan", [("a.jpg", GOOD)], {"latitude": "nan", "longitude": "0"}, "number"),
    ("date-year-1", [("a.jpg", GOOD)], {"observed_at": "0001-01-01T00:00:00"}, "1900"),
    ("date-year-9999", [("a.jpg", GOOD)], {"observed_at": "9999-01-01T00:00:00"}, "1900"),
    ("date-in-future", [("a.jpg", GOOD)], {"observed_at": f"{IN_TEN_DAYS}T00:00:00"}, "1900"),
    ("date-not-a-date", [("a.jpg", GOOD)], {"observed_at": "yesterday-ish"}, "(?i)date"),
    ("no-photo", [], {}, "photo"),
]
CASE_IDS = [case[0] for case in CASES]


def _files(photos: list[tuple[str, bytes | str]]) -> list[SimpleUploadedFile]:
    return [
        SimpleUploadedFile(name, _png_bomb() if data == "bomb" else data, "image/jpeg")
        for name, data in photos
    ]


def _nothing_written(settings) -> None:  # noqa: ANN001
    assert not Encounter.objects.exists()
    assert not Image.objects.exists() and not Annotation.objects.exists()
    assert [p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file()] == []


@pytest.fixture
def volunteer(client):  # noqa: ANN001, ANN201
    client.force_login(UserFactory(role="volunteer"))
    return client


@pytest.mark.parametrize(("case", "photos", "fields", "message"), CASES, ids=CASE_IDS)
def test_bad_sighting_through_the_form_is_refused_with_a_message(
    volunteer,
    settings,
    case,
    photos,
    fields,
    message,  # noqa: ANN001
) -> None:
    settings.MAX_IMAGE_PIXELS = 50_000_000
    species = SpeciesFactory()
    data = {
        "species": species.pk,
        "photos": _files(photos),
        "observed_at": "2025-05-04T10:00",
        "latitude": "",
        "longitude": "",
        "notes": "",
        "bboxes": "",
        **fields,
    }
    response = volunteer.post(reverse("sighting-create"), data)
    assert response.status_code == 400, case
    page = html.unescape(response.content.decode())
    assert 'role="alert"' in page and re.search(message, page), case
    _nothing_written(settings)


@pytest.mark.parametrize(("case", "photos", "fields", "message"), CASES, ids=CASE_IDS)
def test_bad_sighting_through_the_api_is_refused_with_a_message(
    volunteer,
    settings,
    case,
    photos,
    fields,
    message,  # noqa: ANN001
) -> None:
    settings.MAX_IMAGE_PIXELS = 50_000_000
    species = SpeciesFactory()
    data = {
        "species": species.slug,
        "photos": _files(photos),
        "observed_at": "2025-05-04T10:00:00Z",
        **fields,
    }
    response = volunteer.post(reverse("api-sightings"), data)
    assert response.status_code == 400, case
    assert re.search(message, json.dumps(response.json())), (case, response.json())
    _nothing_written(settings)


def test_a_duplicate_of_someone_elses_photo_neither_leaks_nor_leads_to_a_404(
    client,
    settings,  # noqa: ANN001
) -> None:
    species = SpeciesFactory()
    client.force_login(UserFactory(role="volunteer"))
    form = {
        "species": species.pk,
        "observed_at": "2025-05-04T10:00",
        "latitude": "",
        "longitude": "",
        "notes": "",
        "bboxes": "",
    }
    client.post(
        reverse("sighting-create"),
        {**form, "photos": [SimpleUploadedFile("secret-name.jpg", GOOD, "image/jpeg")]},
        follow=True,
    )
    theirs = Encounter.objects.get()

    client.force_login(UserFactory(role="volunteer"))
    response = client.post(
        reverse("sighting-create"),
        {**form, "photos": [SimpleUploadedFile("mine.jpg", GOOD, "image/jpeg")]},
        follow=True,
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "mine.jpg is already in the catalogue, reported by someone else" in page
    assert "secret-name" not in page and f"sighting #{theirs.pk}" not in page.lower()

    api = client.post(
        reverse("api-sightings"),
        {
            "species": species.slug,
            "observed_at": "2025-05-04T10:00:00Z",
            "photos": [SimpleUploadedFile("mine.jpg", GOOD, "image/jpeg")],
        },
    )
    assert api.status_code == 200
    body = json.dumps(api.json())
    assert "secret-name" not in body and api.json()["duplicates"] == [
        {"filename": "mine.jpg", "sighting": None}
    ]
    assert Encounter.objects.count() == 1 and Image.objects.count() == 1


def test_nan_rows_stored_before_validation_do_not_break_the_json_apis(client) -> None:  # noqa: ANN001
    volunteer = UserFactory(role="volunteer")
    individual = IndividualFactory(is_public=True)
    annotation = AnnotationFactory(
        individual=individual,
        species=individual.species,
        image__encounter__species=individual.species,
        image__encounter__submitted_by=volunteer,
        identity_source=Annotation.IdentitySource.EXPERT,
    )
    Annotation.objects.filter(pk=annotation.pk).update(bbox_x=float("nan"), bbox_w=float("inf"))
    response = client.get(reverse("api-individual-annotations", args=[individual.pk]))
    assert response.status_code == 200
    assert response.json()["results" if "results" in response.json() else 0]
    client.force_login(volunteer)
    response = client.get(reverse("api-sightings"))
    assert response.status_code == 200
    box = response.json()[0]["images"][0]["annotations"][0]
    assert box["bbox_x"] is None and box["bbox_w"] is None


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"days": "99999999999"}, "at most"),
        ({"start": "9999-01-01"}, "1900"),
        ({"start": "0001-01-01"}, "1900"),
    ],
)
def test_capture_history_with_absurd_numbers_says_why(client, params, message) -> None:  # noqa: ANN001
    client.force_login(UserFactory(role="expert"))
    species = SpeciesFactory(name="Wolf")
    response = client.get(
        reverse("export-capture-history"),
        {"species": species.slug, "days": 30, "start": "2020-01-01", "end": "2020-12-31", **params},
    )
    assert response.status_code == 400
    assert message in html.unescape(response.content.decode())


def test_non_numeric_ids_on_review_views_are_no_500(client) -> None:  # noqa: ANN001
    client.force_login(UserFactory(role="expert"))
    assert client.get(reverse("review-queue"), {"species": "abc"}).status_code == 200
    assert client.get(reverse("individual-merge"), {"species": "abc"}).status_code == 200
    merged = client.post(reverse("individual-merge"), {"kept": "abc", "merged": "1e3"})
    assert merged.status_code == 404
    annotation = AnnotationFactory()
    from identification.models import Identification

    Identification.objects.create(annotation=annotation)
    for fields in (
        {"action": "confirm", "individual": "abc"},
        {"action": "confirm", "individual": "", "expected_individual": "x"},
    ):
        response = client.post(reverse("review-act", args=[annotation.pk]), fields)
        assert response.status_code == 302, fields


def test_merge_and_revert_keep_a_private_individual_private() -> None:
    expert = UserFactory(role="expert")
    species = SpeciesFactory()
    kept = IndividualFactory(species=species, is_public=True)
    private = IndividualFactory(species=species, is_public=False)
    merge = individual_merge(kept=kept, merged=private, merged_by=expert)
    merge_revert(merge=IndividualMerge.objects.get(pk=merge.pk), reverted_by=expert)
    assert Individual.objects.get(pk=private.pk).is_public is False
    public = IndividualFactory(species=species, is_public=True)
    merge = individual_merge(kept=kept, merged=public, merged_by=expert)
    merge_revert(merge=merge, reverted_by=expert)
    assert Individual.objects.get(pk=public.pk).is_public is True
