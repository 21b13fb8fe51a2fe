"""A bulk load drops the species' HNSW index and its last batch builds it again."""

from __future__ import annotations

import pytest
from django.db import connection

from catalogue.services.imports import dataset_plan
from identification.models import EmbeddingJob
from identification.selectors.search import embedding_index_name
from identification.services import embedding_run, search
from identification.services.embedding import embedding_jobs_recover
from identification.services.embedding_run import embedding_jobs_run
from identification.services.models import zero_shot_version
from identification.services.pipeline import dataset_ingest, species_register

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def _index_exists(species_id: int) -> bool:
    name = embedding_index_name(species_id=species_id, version_id=zero_shot_version().pk)
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_indexes WHERE indexname = %s", [name])
        return cursor.fetchone() is not None


def _import(shared_datasets, capture, species, individuals: int):  # noqa: ANN001, ANN202
    plan = dataset_plan(
        metadata_csv=shared_datasets / "chimp_faces_demo" / "metadata.csv",
        species=species,
        max_individuals=individuals,
        images_per_individual=2,
    )
    with capture(execute=False):  # the jobs run here, batch by batch
        dataset_ingest(plan=plan)
    return list(
        EmbeddingJob.objects.filter(annotation__species=species).values_list("pk", flat=True)
    )


def test_bulk_load_builds_the_index_after_its_last_vector(
    shared_datasets, django_capture_on_commit_callbacks, monkeypatch
) -> None:  # noqa: ANN001
    monkeypatch.setattr(search, "BULK_LOAD_MIN", 6)
    monkeypatch.setattr(embedding_run, "EMBED_BATCH_SIZE", 3)  # the claim tops batches up to it
    with connection.cursor() as cursor:  # CREATE INDEX refuses deferred foreign-key checks
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    species = species_register(name="Chimpanzee")
    jobs = _import(shared_datasets, django_capture_on_commit_callbacks, species, 4)
    assert len(jobs) == 8 and not _index_exists(species.pk)
    embedding_jobs_run(job_ids=jobs[:3])
    assert EmbeddingJob.objects.filter(state="queued").exists()
    embedding_jobs_recover()  # the sweep leaves it too while the load goes on
    assert not _index_exists(species.pk)
    embedding_jobs_run(job_ids=jobs[3:])
    assert _index_exists(species.pk)

    # 6 more photos (3 new individuals) into the 8 the species holds: the index stays.
    jobs = _import(shared_datasets, django_capture_on_commit_callbacks, species, 7)
    assert len(jobs) == 14 and _index_exists(species.pk)


def test_small_import_keeps_the_index(shared_datasets, django_capture_on_commit_callbacks) -> None:  # noqa: ANN001
    species = species_register(name="Chimpanzee")
    jobs = _import(shared_datasets, django_capture_on_commit_callbacks, species, 3)
    assert len(jobs) == 6 and _index_exists(species.pk)  # below BULK_LOAD_MIN


def test_keypoint_blobs_are_stored_without_compression() -> None:
    # pglz cannot shrink quantised descriptors but tries on every blob over 2 kB.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT attstorage FROM pg_attribute WHERE attrelid = "
            "'identification_localfeatures'::regclass AND attname = 'data'"
        )
        assert cursor.fetchone() == ("e",)
