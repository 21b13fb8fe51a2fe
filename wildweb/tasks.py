"""The periodic job sweep (Celery beat, queue ``default``), also run when a worker starts.

The sweep calls into every app, so it lives here, above them; the rest of ``wildweb``
(settings, errors, ``jobs``, storage) lies below the apps and imports none of them.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from celery.signals import worker_ready


@shared_task(acks_late=True)
def jobs_sweep_task() -> None:
    jobs_sweep()


def jobs_sweep() -> dict[str, int]:
    """Send again every job the database says is pending but no live worker will run.

    Embedding jobs, searches, thumbnails, training runs, imports, promotions waiting for their
    re-embedding, species waiting for their ranking method to be chosen and notification
    e-mails; each part is idempotent (claims are conditional), so a duplicate is harmless.

    Returns:
        How many of each were sent.
    """
    from catalogue.services.sightings import thumbnails_missing_send
    from identification.services.calibration import calibration_jobs_recover
    from identification.services.embedding import embedding_jobs_recover
    from identification.services.matching import identifications_recover
    from notifications.services import notification_emails_recover
    from training.services.imports import dataset_imports_recover
    from training.services.promotion import promotions_switch_check
    from training.services.runs import training_runs_recover
    from wildweb.jobs import queue_waiting
    from wildweb.storage import partial_files_remove

    return {
        "embedding_jobs": embedding_jobs_recover(),
        "identifications": identifications_recover(),
        "thumbnails": thumbnails_missing_send(),
        # Runs have no "sent" mark: send again only when no message waits in their queue,
        # or every sweep would add a duplicate behind a long run (lost runs are freed anyway).
        "training_runs": len(training_runs_recover(send=queue_waiting("training") == 0)),
        "promotions_switched": len(promotions_switch_check()),
        "calibrations": calibration_jobs_recover(),
        "imports": dataset_imports_recover(),
        "notification_emails": notification_emails_recover(),
        "partial_files_removed": partial_files_remove(),
    }


@worker_ready.connect
def _sweep_on_worker_start(sender: Any = None, **kwargs: Any) -> None:
    """A worker (re)starting picks up what a dead one left: jobs, searches, runs, promotions."""
    from wildweb.jobs import task_send

    task_send(jobs_sweep_task)
