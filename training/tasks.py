"""Celery tasks of training: a run (queue ``training``) and an import's steps (``bulk``).

Lost ones are sent again by the job sweep, which reads the database.
"""

from __future__ import annotations

from celery import shared_task


@shared_task(acks_late=True, reject_on_worker_lost=True)
def training_run_task(run_id: int) -> None:
    from training.services.runs import training_run_execute

    training_run_execute(run_id=run_id)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def dataset_import_task(import_id: int) -> None:
    from training.services.imports import dataset_import_execute

    dataset_import_execute(import_id=import_id)
