"""The vertical slice on real photos, a real worker, real Redis and real Postgres."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import psutil
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from catalogue.models import Annotation, Individual
from catalogue.services.imports import dataset_plan
from conftest import CeleryWorker
from identification.models import Embedding, EmbeddingJob, Identification, IdentityDecision
from identification.services.embedding import embedding_jobs_recover
from identification.services.pipeline import dataset_ingest, species_register
from tests.factories import UserFactory
from tests.helpers import wait_until

pytestmark = pytest.mark.slow


def held_back_photo(metadata: Path, identity: str, index: int) -> Path:
    """The ``index``-th photo (by path) of an identity, beyond what the import took."""
    folder = metadata.parent / "images" / identity
    return sorted(folder.glob("*.jpg"))[index]


def import_species(shared: Path, folder: str, name: str, individuals: int, per_individual: int):  # noqa: ANN201
    species = species_register(name=name)
    plan = dataset_plan(
        metadata_csv=shared / folder / "metadata.csv",
        species=species,
        max_individuals=individuals,
        images_per_individual=per_individual,
    )
    dataset_ingest(plan=plan)
    return species, plan


@pytest.mark.django_db(transaction=True)
def test_upload_of_known_chimp_ranks_it_in_top5_and_expert_confirms(
    client, celery_worker, shared_datasets
) -> None:  # noqa: ANN001
    chimps, plan = import_species(shared_datasets, "chimp_faces_demo", "Chimpanzee", 8, 3)
    import_species(shared_datasets, "fs48_fish", "Goldfish", 3, 3)
    wait_until(lambda: EmbeddingJob.objects.filter(state="done").count() == 33, timeout=180)

    identity = plan.new_individuals[2]
    photo = held_back_photo(shared_datasets / "chimp_faces_demo" / "metadata.csv", identity, 5)
    client.force_login(UserFactory(role="volunteer"))
    response = client.post(
        reverse("sighting-create"),
        {
            "species": chimps.pk,
            "observed_at": "2025-06-01T08:00",
            "latitude": "5.1",
            "longitude": "-7.2",
            "bboxes": "",
            "photos": [SimpleUploadedFile(photo.name, photo.read_bytes())],
        },
    )
    assert response.status_code == 302
    query = Annotation.objects.get(image__original_filename=photo.name)
    wait_until(
        lambda: Identification.objects.filter(annotation=query, state="ready").exists(), timeout=120
    )

    identification = Identification.objects.get(annotation=query)
    ranked = list(identification.candidates.values_list("individual__code", flat=True))
    assert identity in ranked[:5], ranked
    assert all(Individual.objects.get(species=chimps, code=code) for code in ranked)

    expert = UserFactory(role="expert")
    client.force_login(expert)
    page = client.get(reverse("review-annotation", args=[query.pk])).content.decode()
    truth = identification.candidates.get(individual__code=identity)
    assert reverse("candidate-correspondences", args=[truth.pk]) in page
    drawing = client.get(reverse("candidate-correspondences", args=[truth.pk]))
    assert drawing.status_code == 200 and drawing["Content-Type"] == "image/jpeg"

    client.post(
        reverse("review-act", args=[query.pk]),
        {"action": "same", "individual": truth.individual_id, "expected_individual": ""},
    )
    query.refresh_from_db()
    assert query.individual.code == identity
    decision = IdentityDecision.objects.get(annotation=query)
    assert decision.decided_by == expert and decision.individual_after == query.individual


@pytest.mark.django_db(transaction=True)
def test_killed_worker_embedding_is_retried_without_a_duplicate_vector(shared_datasets) -> None:  # noqa: ANN001
    from wildweb.celery import app

    app.control.purge()
    worker = CeleryWorker(pool="prefork")
    try:
        species, plan = import_species(shared_datasets, "chimp_faces_demo", "Chimpanzee", 4, 4)
        worker.wait_for("embedding_jobs_run_task", timeout=30)  # received
        wait_until(lambda: EmbeddingJob.objects.filter(state="running").exists(), timeout=60)
        children = psutil.Process(worker.process.pid).children(recursive=True)
        for child in children:
            child.send_signal(signal.SIGKILL)
        assert children, "the worker had no pool process to kill"
        killed_mid_job = EmbeddingJob.objects.exclude(state="done").exists()
        assert killed_mid_job, "the job finished before the kill; the test proves nothing"

        # The redelivered batch finds its jobs held by a dead process and takes them back.
        wait_until(lambda: not EmbeddingJob.objects.exclude(state="done").exists(), timeout=180)
        assert "WorkerLostError" in worker.log() or "SIGKILL" in worker.log()
        # A lost broker message is recovered from the database; claiming keeps it idempotent.
        embedding_jobs_recover()
        time.sleep(2)
        assert Embedding.objects.filter(species=species).count() == len(plan.rows) == 16
        assert EmbeddingJob.objects.filter(state="done").count() == 16
    finally:
        worker.stop()


@pytest.mark.django_db(transaction=True)
def test_batch_of_a_worker_killed_with_its_child_is_recovered_by_the_sweep(
    shared_datasets,
) -> None:  # noqa: ANN001
    """kill -9 of the worker and its pool child: no one redelivers the unacked message (Redis
    would after the visibility timeout, hours); the sweep finds the jobs in the database."""
    from wildweb.celery import app

    app.control.purge()
    worker = CeleryWorker(pool="prefork", queues="bulk")
    replacement = None
    try:
        species, plan = import_species(shared_datasets, "chimp_faces_demo", "Chimpanzee", 4, 4)
        wait_until(lambda: EmbeddingJob.objects.filter(state="running").exists(), timeout=60)
        main = psutil.Process(worker.process.pid)
        for process in [*main.children(recursive=True), main]:
            process.send_signal(signal.SIGKILL)
        worker.process.wait(timeout=10)
        assert EmbeddingJob.objects.exclude(state="done").exists(), "finished before the kill"

        # A worker on the other queues, with the periodic sweep, picks the batch up.
        replacement = CeleryWorker(
            queues="default,identify,bulk", beat=True, env={"JOBS_SWEEP_SECONDS": "3"}
        )
        wait_until(lambda: not EmbeddingJob.objects.exclude(state="done").exists(), timeout=240)
        assert Embedding.objects.filter(species=species).count() == len(plan.rows) == 16
        assert "jobs_sweep_task[" in replacement.log()  # received, not just listed
    finally:
        worker.stop()
        if replacement is not None:
            replacement.stop()
