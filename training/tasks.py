"""Celery tasks of training: runs on queue ``training``, the rest on ``default``."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from celery.signals import worker_ready

logger = logging.getLogger(__name__)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def training_run_task(run_id: int) -> None:
    from training.services.runs import training_run_execute

    training_run_execute(run_id=run_id)


@shared_task(acks_late=True)
def training_recover_task() -> None:
    """Send again what the database says is unfinished: lost training runs, promotions."""
    from training.services.promotion import promotions_resume
    from training.services.runs import training_runs_recover

    training_runs_recover()
    promotions_resume()


@worker_ready.connect
def _recover_on_worker_start(sender: Any = None, **kwargs: Any) -> None:
    """A worker (re)starting picks up runs whose worker died and unfinished promotions."""
    from wildweb.jobs import task_send

    task_send(training_recover_task)
