"""Identification never waits for training: separate queues, a training worker of its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from catalogue.models import Encounter, Individual
from conftest import CeleryWorker
from identification.models import EmbeddingJob, Identification
from identification.services.embedding import embedding_jobs_dispatch
from tests.helpers import wait_until
from tests.training.conftest import TINY, sighting_report
from training.models import TrainingRun
from training.services.runs import training_run_cancel, training_run_start

pytestmark = pytest.mark.slow


@pytest.mark.django_db(transaction=True)
def test_upload_gets_candidates_while_a_training_run_holds_the_training_worker(
    small_chimp, shared_datasets: Path
) -> None:  # noqa: ANN001
    from wildweb.celery import WORKER_GROUPS, app

    app.control.purge()  # earlier tests' tasks; this test's import is sent again below
    embedding_jobs_dispatch(job_ids=list(EmbeddingJob.objects.values_list("pk", flat=True)))
    training = CeleryWorker(queues=WORKER_GROUPS["training"], pool="prefork", name="training")
    interactive = CeleryWorker(queues="identify,default,bulk", name="interactive")
    run = None
    try:
        wait_until(lambda: not EmbeddingJob.objects.exclude(state="done").exists(), timeout=180)
        # Long enough to still be training when the upload is answered; cancelled at the end.
        run = training_run_start(
            species=small_chimp,
            engine_mode="cached",
            mode="new-data-only",
            hyperparameters={**TINY, "epochs": 200, "samples_per_epoch": 64},
        )
        wait_until(lambda: TrainingRun.objects.get(pk=run.pk).epoch >= 1, timeout=180)

        known = set(Individual.objects.filter(species=small_chimp).values_list("code", flat=True))
        stranger = next(
            folder
            for folder in sorted((shared_datasets / "chimp_faces_demo" / "images").iterdir())
            if folder.name not in known
        )
        annotation = sighting_report(sorted(stranger.glob("*.jpg"))[0], small_chimp)
        wait_until(
            lambda: Identification.objects.filter(annotation=annotation, state="ready").exists(),
            timeout=180,
        )

        run.refresh_from_db()
        assert run.status == TrainingRun.Status.RUNNING, run.log  # the fine-tune still holds it
        assert run.worker.split(":")[-1] != str(interactive.process.pid)
        identification = Identification.objects.get(annotation=annotation)
        assert identification.candidates.count() == len(known)
        encounter = Encounter.objects.get(pk=annotation.image.encounter_id)
        assert encounter.status == Encounter.Status.AWAITING_REVIEW
        # The search ran on the interactive worker (on the fair identify queue a search is the
        # "next job" nudge), never on the training worker.
        assert "identification_next_task[" in interactive.log()
        assert "identification_next_task[" not in training.log()
        assert "annotation_identify_task[" not in training.log()
    finally:
        if run is not None and TrainingRun.objects.filter(pk=run.pk, status="running").exists():
            training_run_cancel(run=run)
            wait_until(lambda: not TrainingRun.objects.get(pk=run.pk).is_active, timeout=120)
        interactive.stop()
        training.stop()
