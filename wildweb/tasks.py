"""The periodic job sweep (Celery beat, queue ``default``), also run when a worker starts."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from celery.signals import worker_ready


@shared_task(acks_late=True)
def jobs_sweep_task() -> None:
    from wildweb.jobs import jobs_sweep

    jobs_sweep()


@worker_ready.connect
def _sweep_on_worker_start(sender: Any = None, **kwargs: Any) -> None:
    """A worker (re)starting picks up what a dead one left: jobs, searches, runs, promotions."""
    from wildweb.jobs import task_send

    task_send(jobs_sweep_task)
