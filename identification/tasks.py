"""Celery tasks of identification (queue ``gpu``): thin wrappers around services."""

from __future__ import annotations

from celery import shared_task

from identification.services.matching import NotEmbeddedYet


@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OSError,),
    retry_backoff=True,
    max_retries=5,
)
def embedding_jobs_run_task(job_ids: list[int]) -> list[int]:
    from identification.services.embedding import embedding_jobs_run

    return embedding_jobs_run(job_ids=job_ids)


@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(NotEmbeddedYet,),
    retry_backoff=2,
    max_retries=8,
)
def annotation_identify_task(annotation_id: int) -> None:
    from identification.services.matching import annotation_identify

    annotation_identify(annotation_id=annotation_id)


@shared_task(acks_late=True)
def species_model_switch_task(species_id: int) -> bool:
    """Sent after a batch of vectors under a species' pending version was stored."""
    from catalogue.models import Species
    from identification.services.model_switch import species_model_switch_if_ready

    species = Species.objects.filter(pk=species_id).first()  # deleted meanwhile: nothing to do
    return species is not None and species_model_switch_if_ready(species=species)
