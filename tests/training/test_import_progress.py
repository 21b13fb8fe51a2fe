"""Following an import's embedding: the command's --wait bar and the species page's bar."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse

from catalogue.models import Species
from identification.models import EmbeddingJob
from identification.services.embedding_run import embedding_jobs_run
from identification.tasks import species_calibrate_task
from tests.factories import UserFactory

pytestmark = pytest.mark.slow


def _import(shared_datasets, *extra: str) -> Species:  # noqa: ANN001
    call_command(
        "import_dataset",
        str(shared_datasets / "chimp_faces_demo" / "metadata.csv"),
        "--species",
        "Chimpanzee",
        "--max-individuals",
        "3",
        "--images-per-individual",
        "2",
        *extra,
        stdout=StringIO(),
        stderr=StringIO(),
    )
    return Species.objects.get(name="Chimpanzee")


@pytest.mark.django_db
def test_species_page_shows_embedding_progress_until_every_photo_has_a_vector(
    client, shared_datasets
) -> None:  # noqa: ANN001
    species = _import(shared_datasets)  # no worker runs: the jobs stay queued
    client.force_login(UserFactory(role="admin"))
    url = reverse("training-species-model", args=[species.pk])
    page = client.get(url).content.decode()
    assert "Embedding photos: 0 of 6 have a vector" in page
    assert 'id="embedding-progress"' in page and "hx-trigger" in page

    embedding_jobs_run(job_ids=list(EmbeddingJob.objects.values_list("pk", flat=True)))
    page = client.get(url).content.decode()
    assert "Embedding photos" not in page
    # The labelled photos' ranking method is chosen next, by itself; the page waits for it.
    assert "Choosing the ranking method" in page and "hx-trigger" in page
    species_calibrate_task(species.pk)
    page = client.get(url).content.decode()
    assert "Choosing the ranking method" not in page and "hx-trigger" not in page


def test_import_command_waits_for_the_workers_to_embed_everything(
    celery_worker, shared_datasets
) -> None:  # noqa: ANN001
    species = _import(shared_datasets, "--wait")
    jobs = EmbeddingJob.objects.filter(annotation__species=species)
    assert jobs.count() == 6
    assert set(jobs.values_list("state", flat=True)) == {EmbeddingJob.State.DONE}
