"""A sighting stored → its animals queued for identification, in one step or not at all."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from catalogue.models import Annotation, Encounter, Image
from catalogue.services.sightings import UploadedPhoto, atomic_with_files, sighting_create
from identification.models import EmbeddingJob
from identification.services import pipeline
from tests.factories import SpeciesFactory, UserFactory
from tests.helpers import jpeg_bytes

pytestmark = pytest.mark.django_db


def _photos() -> list[UploadedPhoto]:
    return [
        UploadedPhoto(filename=f"{n}.jpg", data=jpeg_bytes(color=(n * 80, 20, 40)))
        for n in range(2)
    ]


SEEN = datetime(2025, 5, 4, 10, 0, tzinfo=UTC)


def _stored_files(settings) -> list[Path]:  # noqa: ANN001
    return [p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file()]


def test_a_submitted_sighting_has_an_embedding_job_per_photo_on_the_identify_queue() -> None:
    result = pipeline.sighting_submit(
        submitted_by=UserFactory(role="volunteer"),
        species=SpeciesFactory(),
        photos=_photos(),
        observed_at=SEEN,
    )
    jobs = EmbeddingJob.objects.filter(annotation_id__in=result.annotation_ids)
    assert len(result.annotation_ids) == 2
    assert sorted(jobs.values_list("queue", flat=True)) == ["identify", "identify"]


def test_the_catalogue_alone_stores_a_sighting_without_queueing_anything() -> None:
    result = sighting_create(
        submitted_by=UserFactory(role="volunteer"),
        species=SpeciesFactory(),
        photos=_photos(),
        observed_at=SEEN,
    )
    assert Annotation.objects.filter(pk__in=result.annotation_ids).count() == 2
    assert not EmbeddingJob.objects.exists()


def test_a_failure_queueing_the_search_keeps_neither_the_sighting_nor_its_files(
    settings,
    monkeypatch,  # noqa: ANN001
) -> None:
    def broken_enqueue(**kwargs: object) -> list[int]:
        raise RuntimeError("the job table is unreachable")

    monkeypatch.setattr(pipeline, "annotations_embed_enqueue", broken_enqueue)
    with pytest.raises(RuntimeError):
        pipeline.sighting_submit(
            submitted_by=UserFactory(role="volunteer"),
            species=SpeciesFactory(),
            photos=_photos(),
            observed_at=SEEN,
        )
    assert Encounter.objects.count() == Image.objects.count() == Annotation.objects.count() == 0
    assert _stored_files(settings) == []


def test_a_nested_block_that_rolls_back_takes_back_only_its_own_files() -> None:
    with atomic_with_files() as outer:
        kept = default_storage.save("kept.jpg", ContentFile(b"kept"))
        outer.append(kept)
        with pytest.raises(RuntimeError), atomic_with_files() as inner:
            assert inner is outer
            dropped = default_storage.save("dropped.jpg", ContentFile(b"dropped"))
            inner.append(dropped)
            raise RuntimeError("the savepoint rolls back")
        assert outer == [kept]
    assert default_storage.exists(kept) and not default_storage.exists(dropped)
