"""The thumbnail chore runs on a real Celery worker over the real Redis."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.urls import reverse
from PIL import Image as PILImage

from catalogue.models import Image
from tests.factories import SpeciesFactory, UserFactory
from tests.helpers import exif_bytes, jpeg_bytes, wait_until


@pytest.mark.django_db(transaction=True)
def test_uploaded_photos_get_upright_thumbnails_from_a_real_worker(
    client, celery_worker, settings
) -> None:  # noqa: ANN001
    client.force_login(UserFactory(role="volunteer"))
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = client.post(
        reverse("sighting-create"),
        {
            "species": SpeciesFactory().pk,
            "observed_at": "2025-05-04T10:00",
            "bboxes": "",
            "photos": [
                SimpleUploadedFile("wide.jpg", jpeg_bytes(size=(120, 60))),
                SimpleUploadedFile(
                    "turned.jpg",
                    jpeg_bytes(size=(120, 60), color=(5, 5, 5), exif=exif_bytes(orientation=6)),
                ),
            ],
        },
    )
    assert response.status_code == 302
    wait_until(lambda: Image.objects.exclude(thumbnail="").count() == 2, timeout=60)
    sizes = {}
    for image in Image.objects.all():
        with PILImage.open(Path(settings.MEDIA_ROOT) / image.thumbnail.name) as thumb:
            sizes[image.original_filename] = thumb.size
    # The worker's THUMBNAIL_SIZE is the default (320); the photos are smaller, so kept as-is.
    assert sizes == {"wide.jpg": (120, 60), "turned.jpg": (60, 120)}
    assert "image_thumbnail_task" in celery_worker.log()
