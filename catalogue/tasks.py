"""Celery tasks of the catalogue (queue ``default``): thin wrappers around services."""

from __future__ import annotations

from celery import shared_task


@shared_task(acks_late=True, autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def image_thumbnail_task(image_id: int) -> None:
    from catalogue.models import Image
    from catalogue.services.sightings import image_thumbnail_create

    image = Image.objects.filter(pk=image_id).first()
    if image is not None:  # deleted since: nothing to do
        image_thumbnail_create(image=image)
