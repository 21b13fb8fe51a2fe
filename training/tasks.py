"""Celery task of training: a run, on queue ``training``; lost runs are re-sent by the job sweep."""

from __future__ import annotations

from celery import shared_task


@shared_task(acks_late=True, reject_on_worker_lost=True)
def training_run_task(run_id: int) -> None:
    from training.services.runs import training_run_execute

    training_run_execute(run_id=run_id)
