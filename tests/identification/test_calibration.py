"""A species' ranking method is chosen by itself: asked for, run once at a time, swept."""

from __future__ import annotations

import os
import socket
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from catalogue.services.imports import dataset_plan
from identification.models import CalibrationJob, EmbeddingJob, SpeciesModel
from identification.services.calibration import (
    calibration_jobs_recover,
    calibration_request,
    calibration_request_if_embedded,
    species_calibration_run,
)
from identification.services.decisions import match_decide
from identification.services.embedding_run import embedding_jobs_run
from identification.services.evaluation import species_evaluate
from identification.services.models import species_model_setting
from identification.services.pipeline import dataset_ingest, species_register
from identification.tasks import species_calibrate_task
from tests.factories import AnnotationFactory, IndividualFactory, UserFactory
from wildweb.jobs import worker_name

pytestmark = pytest.mark.django_db
DEAD_WORKER = f"{socket.gethostname()}:999999999"


@pytest.mark.slow
def test_an_imported_labelled_species_gets_its_method_chosen_with_no_manual_step(
    shared_datasets,
    client,
    django_capture_on_commit_callbacks,  # noqa: ANN001
) -> None:
    species = species_register(name="Chimpanzee")
    plan = dataset_plan(
        metadata_csv=shared_datasets / "chimp_faces_demo" / "metadata.csv",
        species=species,
        max_individuals=5,
        images_per_individual=3,
    )
    with django_capture_on_commit_callbacks(execute=False):
        dataset_ingest(plan=plan)
    assert not CalibrationJob.objects.exists()  # nothing to choose on before the vectors

    # The import's embedding batch, as a bulk worker runs it; its last vector asks for a choice.
    embedding_jobs_run(job_ids=list(EmbeddingJob.objects.values_list("pk", flat=True)))
    job = CalibrationJob.objects.get(species=species)
    assert job.state == "queued" and job.requested_because == "labelled photos were embedded"

    species_calibrate_task(species.pk)  # what the bulk worker runs for the message

    job.refresh_from_db()
    assert job.state == "done" and job.error == "" and job.attempts == 1
    setting = SpeciesModel.objects.get(species=species)
    choice = setting.method_choice
    assert setting.method_choice_current and setting.method_chosen_at is not None
    assert choice["method"] == setting.ranking_method and choice["n_queries"] == 15
    assert 0.2 <= choice["top1"] <= 1.0 and 0.0 <= choice["top1_se"] < 0.2
    assert choice["top1"] == choice["top1_by_method"][setting.ranking_method]
    # The adopted method ranks at least as well as the best part on its own (evaluate).
    evaluated = {
        method: species_evaluate(species=species, method=method)["top1"]
        for method in {"embedding", "local", setting.ranking_method}
    }
    assert evaluated[setting.ranking_method] >= max(evaluated["embedding"], evaluated["local"]) - (
        0.005
    )

    client.force_login(UserFactory(role="admin"))
    page = client.get(reverse("training-species", args=[species.pk])).content.decode()
    assert setting.get_ranking_method_display() in page
    assert f"{choice['top1']:.3f} ± {choice['top1_se']:.3f}" in page
    local_time = timezone.localtime(setting.method_chosen_at)
    assert f"Ranking method chosen {local_time:%-d %b %Y, %H:%M}" in page


def test_labelled_vectors_ask_only_once_the_species_waits_for_no_other(db) -> None:  # noqa: ANN001
    species = species_register(name="Dog")
    version = species_model_setting(species=species).model_version
    individual = IndividualFactory(species=species)
    labelled = [AnnotationFactory(image__encounter__species=species, individual=individual)]
    labelled.append(AnnotationFactory(image__encounter__species=species, individual=individual))
    upload = AnnotationFactory(image__encounter__species=species)
    jobs = {
        a.pk: EmbeddingJob.objects.create(annotation=a, model_version=version, state="done")
        for a in (*labelled, upload)
    }
    EmbeddingJob.objects.filter(pk=jobs[labelled[1].pk].pk).update(state="queued")

    assert calibration_request_if_embedded(jobs=[jobs[labelled[0].pk]]) == []  # one still waits
    assert calibration_request_if_embedded(jobs=[jobs[upload.pk]]) == []  # no identity: no news
    assert not CalibrationJob.objects.exists()
    EmbeddingJob.objects.filter(pk=jobs[labelled[1].pk].pk).update(state="done")
    assert calibration_request_if_embedded(jobs=[jobs[labelled[1].pk]]) == [species.pk]
    assert CalibrationJob.objects.get(species=species).state == "queued"


def test_every_n_expert_decisions_ask_for_a_new_choice(settings) -> None:  # noqa: ANN001
    settings.AUTO_CALIBRATE_DECISIONS = 3
    species = species_register(name="Dog")
    expert = UserFactory(role="expert")
    known = IndividualFactory(species=species)

    def decide(verdict: str) -> None:
        animal = AnnotationFactory(image__encounter__species=species)
        match_decide(
            annotation=animal,
            verdict=verdict,
            decided_by=expert,
            individual=None if verdict == "new" else known,
        )

    decide("new")
    decide("same")
    decide("reject")  # sets no identity: does not count
    assert not CalibrationJob.objects.exists()
    decide("same")
    job = CalibrationJob.objects.get(species=species)
    assert job.state == "queued" and job.requested_because == "3 expert decisions"
    first_asked = job.requested_at

    CalibrationJob.objects.filter(pk=species.pk).update(state="done")
    decide("same")
    decide("new")
    job.refresh_from_db()
    assert job.state == "done" and job.requested_at == first_asked  # 2 since: not yet
    decide("same")
    job.refresh_from_db()
    assert job.state == "queued" and job.requested_at > first_asked


def test_one_species_is_never_calibrated_twice_at_once_and_a_failure_says_why(
    client,  # noqa: ANN001
) -> None:
    species = species_register(name="Dog")  # no labelled photos: calibrate must refuse
    calibration_request(species_id=species.pk, because="test")
    alive = f"{socket.gethostname()}:{os.getpid()}"
    CalibrationJob.objects.filter(pk=species.pk).update(
        state="running", worker=alive, started_at=timezone.now()
    )
    assert species_calibration_run(species_id=species.pk) is False  # held by a live worker
    assert CalibrationJob.objects.get(pk=species.pk).state == "running"

    CalibrationJob.objects.filter(pk=species.pk).update(worker=DEAD_WORKER)
    assert species_calibration_run(species_id=species.pk) is True  # freed, then claimed here
    job = CalibrationJob.objects.get(pk=species.pk)
    assert job.state == "failed" and "too few identified photos" in job.error
    assert job.worker == "" and job.attempts == 1
    assert species_calibration_run(species_id=species.pk) is False  # failed stays failed

    client.force_login(UserFactory(role="admin"))
    page = client.get(reverse("training-species", args=[species.pk])).content.decode()
    assert "The ranking method could not be chosen" in page and "too few identified" in page
    assert "has not been chosen on this model" in page


def test_asked_again_while_running_it_runs_again_afterwards() -> None:
    species = species_register(name="Dog")
    calibration_request(species_id=species.pk, because="import")
    started = timezone.now() - timedelta(seconds=5)
    CalibrationJob.objects.filter(pk=species.pk).update(
        state="running", worker=worker_name(), started_at=started, attempts=1
    )
    calibration_request(species_id=species.pk, because="3 expert decisions")
    job = CalibrationJob.objects.get(pk=species.pk)
    assert job.state == "running" and job.requested_at > started  # not taken from the runner

    from identification.services.calibration import _finish

    _finish(species_id=species.pk, worker=worker_name(), state="done", error="")
    job.refresh_from_db()
    assert job.state == "queued" and job.worker == "" and job.attempts == 0


def test_the_sweep_sends_what_is_wanted_and_frees_a_dead_workers_job() -> None:
    species = species_register(name="Dog")
    calibration_request(species_id=species.pk, because="import")  # on_commit never runs here
    jobs = CalibrationJob.objects.filter(pk=species.pk)
    long_ago = timezone.now() - timedelta(hours=1)
    jobs.update(requested_at=long_ago)
    assert calibration_jobs_recover() == 1  # never sent (the broker was down)
    assert jobs.get().sent_at is not None
    assert calibration_jobs_recover() == 0  # on its way: not sent twice
    jobs.update(sent_at=long_ago)
    assert calibration_jobs_recover() == 1  # its message was lost
    jobs.update(state="running", worker=DEAD_WORKER, started_at=long_ago, sent_at=long_ago)
    assert calibration_jobs_recover() == 1
    job = jobs.get()
    assert job.state == "queued" and "stopped" in job.error and job.sent_at is not None
