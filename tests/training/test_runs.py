"""Training runs on a real worker: report, one run at a time, cancel, resume, promotion."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest

from identification.models import CalibrationJob, EmbeddingJob, Identification, SpeciesModel
from identification.services.models import ZERO_SHOT_NAME
from tests.helpers import wait_until
from tests.training.conftest import TINY, sighting_report
from training.models import TrainingRun
from training.services.promotion import model_promote, model_rollback
from training.services.runs import training_run_cancel, training_run_claim, training_run_start
from training.services.training_data import run_directory

Status = TrainingRun.Status


def _status(run: TrainingRun) -> str:
    run.refresh_from_db()
    return run.status


@pytest.mark.django_db(transaction=True)
def test_run_reports_second_run_waits_cancel_and_promotion_switches_after_reembedding(
    celery_worker, two_species, shared_datasets: Path
) -> None:  # noqa: ANN001
    chimp, fish = two_species
    # An animal nobody has identified yet: ranked by each model the species switches to.
    zyon = sorted((shared_datasets / "chimp_faces_demo" / "images" / "Zyon").glob("*.jpg"))[-1]
    undecided = sighting_report(zyon, chimp)
    first = training_run_start(species=chimp, engine_mode="cached", hyperparameters=TINY)
    # The second run is long enough to be cancelled while it trains.
    second = training_run_start(
        species=chimp,
        engine_mode="cached",
        hyperparameters={**TINY, "epochs": 40, "samples_per_epoch": 64},
    )
    wait_until(lambda: _status(first) == Status.RUNNING, timeout=90)
    assert training_run_claim(run_id=second.pk) is None  # its species already has a run going
    assert _status(second) == Status.QUEUED

    wait_until(lambda: _status(first) in (Status.SUCCEEDED, Status.FAILED), timeout=180)
    assert first.status == Status.SUCCEEDED, first.log
    report = first.report
    for key in ("before", "after", "zero_shot"):
        assert set(report[key]) == {"top1", "top5", "mAP"}
    assert {"Chimpanzee", "Goldfish"} <= set(report["per_species"])
    for model in ("current", "candidate", "zero_shot", "local"):
        assert 0 <= report["per_species"]["Goldfish"][model]["top1"] <= 1
    assert report["recommended_ranking_method"] in ("embedding", "local", "fused")
    # Every ranking of the run's species with its standard errors and the held-out size.
    held = report["held_out"]
    assert held["individuals"] >= 2 and held["images"] == held["queries"] >= 4
    assert set(report["rankings"]) == {"candidate", "current", "zero_shot", "local", "fused"}
    for row in report["rankings"].values():
        p = row["top1"]
        assert row["se"]["top1"] == pytest.approx((p * (1 - p) / (held["queries"] - 1)) ** 0.5)
    assert isinstance(report["forgetting"]["Goldfish"]["flagged"], bool)
    assert report["per_species"]["Chimpanzee"]["new_species"] is True
    assert first.progress == 100 and first.history

    # The waiting run starts once the first is done; cancelling stops it while it trains.
    wait_until(lambda: _status(second) == Status.RUNNING, timeout=60)
    wait_until(lambda: TrainingRun.objects.get(pk=second.pk).epoch >= 1, timeout=120)
    training_run_cancel(run=second)
    wait_until(lambda: _status(second) != Status.RUNNING, timeout=60)
    assert second.status == Status.CANCELLED, second.log

    # Promotion: ranking keeps the old version until every annotation has a new vector.
    old = SpeciesModel.objects.get(species=chimp).model_version
    assert old.name == ZERO_SHOT_NAME

    def ranked_with(version_id: int) -> bool:
        return Identification.objects.filter(
            annotation=undecided, model_version_id=version_id, state=Identification.State.READY
        ).exists()

    wait_until(lambda: ranked_with(old.pk), timeout=60)
    model_promote(run=first, confirmed=True)  # tiny held-out set: it has warnings
    setting = SpeciesModel.objects.get(species=chimp)
    candidate = setting.pending_version
    assert candidate is not None and setting.model_version == old

    def switched() -> bool:
        setting.refresh_from_db()
        if setting.model_version_id == old.pk:
            return False
        return True

    wait_until(switched, timeout=120)
    assert setting.model_version == candidate and setting.previous_version == old
    assert setting.pending_version is None
    assert (
        not EmbeddingJob.objects.filter(model_version=candidate, annotation__species=chimp)
        .exclude(state=EmbeddingJob.State.DONE)
        .exists()
    )
    # The switch adopts the run's recommendation and asks for the guarded choice on the new
    # vectors, which a worker may already have made.
    setting.refresh_from_db()
    assert CalibrationJob.objects.get(species=chimp).requested_because == (
        f"switched to {candidate.name}"
    )
    chosen_since_switch = setting.method_chosen_at and setting.method_chosen_at >= (
        setting.switched_at
    )
    assert setting.ranking_method == (
        setting.method_choice["method"]
        if chosen_since_switch
        else first.report["recommended_ranking_method"]
    )
    wait_until(lambda: ranked_with(candidate.pk), timeout=60)  # re-ranked after the switch

    rolled = model_rollback(species=chimp)
    assert rolled.model_version == old and rolled.previous_version == candidate
    wait_until(lambda: ranked_with(old.pk), timeout=60)  # and again after the rollback


@pytest.mark.django_db(transaction=True)
def test_killed_worker_resumes_from_checkpoint(celery_worker, small_chimp) -> None:  # noqa: ANN001
    from conftest import CeleryWorker

    # Many short epochs: the worker is killed once an epoch's checkpoint exists, which on a
    # fast machine may be several epochs in, so the resumed run still has training left to do.
    epochs = 12
    run = training_run_start(
        species=small_chimp,
        engine_mode="cached",
        mode="new-data-only",
        hyperparameters={**TINY, "epochs": epochs, "samples_per_epoch": 80},
    )
    checkpoint = run_directory(run=run) / "model" / "checkpoint.pt"
    wait_until(
        lambda: checkpoint.exists() and TrainingRun.objects.get(pk=run.pk).epoch >= 2,
        timeout=120,
        interval=0.1,
    )
    os.kill(celery_worker.process.pid, signal.SIGKILL)
    celery_worker.process.wait(timeout=10)
    assert _status(run) == Status.RUNNING  # nobody told the database

    replacement = CeleryWorker()  # finds the run's worker gone and sends the run again
    try:
        # Generous: on the shared 2-core machine the resumed 11 epochs took 263 s once.
        wait_until(lambda: _status(run) in (Status.SUCCEEDED, Status.FAILED), timeout=600)
    finally:
        replacement.stop()
    assert run.status == Status.SUCCEEDED, run.log
    assert run.resumed_count == 1
    resumed = re.search(r"Resumed from checkpoint after epoch (\d+)\.", run.log)
    assert resumed, run.log
    done = int(resumed.group(1))
    assert 1 <= done < epochs, run.log
    # Training went on from the checkpoint instead of starting over or skipping to the end.
    after_resume = run.log[resumed.end() :]
    assert f"Epoch {done + 1} done" in after_resume, run.log
    assert "Epoch 1 done" not in after_resume, run.log
    assert "was lost; queued again" in run.log
    assert run.report["after"]["top1"] is not None


@pytest.mark.django_db
def test_run_of_a_recreated_database_does_not_find_the_old_runs_checkpoint(small_chimp) -> None:  # noqa: ANN001
    # The database is recreated while media is kept: the new run gets the old run's id.
    old = training_run_start(species=small_chimp, dispatch=False)
    old_folder = run_directory(run=old) / "model"
    old_folder.mkdir(parents=True)
    (old_folder / "checkpoint.pt").write_bytes(b"the old run's model")
    old_id = old.pk
    TrainingRun.objects.all().delete()
    new = training_run_start(species=small_chimp, dispatch=False)
    TrainingRun.objects.filter(pk=new.pk).update(id=old_id)
    new = TrainingRun.objects.get(pk=old_id)
    assert new.pk == old.pk
    assert run_directory(run=new) != run_directory(run=old)
    assert not (run_directory(run=new) / "model" / "checkpoint.pt").exists()


@pytest.mark.django_db
def test_run_needs_enough_identified_individuals() -> None:
    from tests.factories import SpeciesFactory
    from wildweb.errors import ServiceError

    with pytest.raises(ServiceError, match="training needs"):
        training_run_start(species=SpeciesFactory(), dispatch=False)


@pytest.mark.django_db
def test_unknown_hyperparameter_is_refused() -> None:
    from training.services.runs import hyperparameters_resolve
    from wildweb.errors import ServiceError

    with pytest.raises(ServiceError, match="Unknown hyperparameter"):
        hyperparameters_resolve(engine_mode="cached", given={"learning_speed": 3})
    assert hyperparameters_resolve(engine_mode="", given={"epochs": "2"})["epochs"] == 2
    assert hyperparameters_resolve(engine_mode="", given={"seed": "0"})["seed"] == 0
    with pytest.raises(ServiceError, match="epochs must be positive"):
        hyperparameters_resolve(engine_mode="", given={"epochs": 0})


@pytest.mark.django_db(transaction=True)
def test_a_lost_run_is_freed_even_while_a_message_waits_in_the_training_queue(small_chimp) -> None:  # noqa: ANN001
    """The sweep sends no duplicate while a training message waits, but it still frees the
    dead worker's run, so that waiting message (or the next sweep) can run it. Before, the run
    stayed held by the dead worker and the waiting message found nothing it could claim."""
    import socket

    from training.tasks import training_run_task
    from wildweb.celery import app
    from wildweb.jobs import queue_waiting
    from wildweb.tasks import jobs_sweep

    app.control.purge()
    run = training_run_start(species=small_chimp, dispatch=False)
    TrainingRun.objects.filter(pk=run.pk).update(
        status=Status.RUNNING,
        worker=f"{socket.gethostname()}:{2**22 + 7}",  # above pid_max
    )
    training_run_task.apply_async((run.pk,), queue="training")  # waits: no worker runs
    try:
        assert queue_waiting("training") == 1
        swept = jobs_sweep()
        run.refresh_from_db()
        assert run.status == Status.QUEUED, run.log
        assert "was lost; queued again" in run.log
        assert swept["training_runs"] == 0 and queue_waiting("training") == 1  # no duplicate
    finally:
        app.control.purge()
