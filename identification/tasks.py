"""Celery tasks of identification (queues ``identify`` and ``bulk``): thin service wrappers.

Time limits are in settings (``CELERY_TASK_ANNOTATIONS``); failures are recorded on the job
rows by the services, so nothing here retries what cannot pass.
"""

from __future__ import annotations

from celery import shared_task

from identification.services.matching import NotEmbeddedYet, SearchFailed


@shared_task(acks_late=True, reject_on_worker_lost=True)
def embedding_jobs_run_task(job_ids: list[int]) -> None:
    from identification.services.fair import embedding_message_run

    embedding_message_run(job_ids=job_ids)


@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(NotEmbeddedYet, SearchFailed),
    retry_backoff=2,
    max_retries=8,
)
def annotation_identify_task(annotation_id: int) -> None:
    from identification.services.matching import annotation_identify

    annotation_identify(annotation_id=annotation_id)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def identification_next_task(queue: str) -> None:
    """A nudge on a fair queue (``identify``): run its next unit of work, searches first."""
    from identification.services.fair import fair_turn_run

    fair_turn_run(queue=queue)


@shared_task(acks_late=True)
def species_model_switch_task(species_id: int) -> bool:
    """Sent after a batch of vectors under a species' pending version was stored."""
    from catalogue.models import Species
    from identification.services.model_switch import species_model_switch_if_ready

    species = Species.objects.filter(pk=species_id).first()  # deleted meanwhile: nothing to do
    return species is not None and species_model_switch_if_ready(species=species)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def species_calibrate_task(species_id: int) -> None:
    """Choose a species' ranking method and calibration (queue ``bulk``; the row is the truth)."""
    from identification.services.calibration import species_calibration_run

    species_calibration_run(species_id=species_id)
