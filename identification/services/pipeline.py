"""Where the catalogue's writes start identification work.

The catalogue stores sightings, species, imports and corrected boxes and knows nothing of
identification; each function here does one such write and, in the same step, queues what
identification has to do about it. Views, commands and the training app call these, not the
catalogue services they wrap, whenever the write should lead to identification.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from catalogue.models import Annotation, Encounter, Species
from catalogue.services.annotations import annotation_update
from catalogue.services.imports import ImportPlan, ImportResult, dataset_import
from catalogue.services.sightings import (
    SightingResult,
    UploadedPhoto,
    atomic_with_files,
    sighting_create,
)
from catalogue.services.species import species_create
from identification.models import EmbeddingJob
from identification.services.embedding import (
    annotation_search_again,
    annotations_embed_enqueue,
    species_embeddings_enqueue,
)
from identification.services.models import species_model_setting
from reid.schema import BBox


def sighting_submit(
    *,
    submitted_by: AbstractBaseUser | None,
    species: Species,
    photos: list[UploadedPhoto],
    observed_at: datetime | None = None,
    latitude: float | None = None,
    longitude: float | None = None,
    notes: str = "",
    viewpoint: str = "",
) -> SightingResult:
    """Store a sighting (:func:`catalogue.services.sightings.sighting_create`) and queue the
    search for its animals, all in one transaction.

    Raises:
        ServiceError: As ``sighting_create``; nothing is stored or queued.
    """
    queue = _identify_queue(submitted_by=submitted_by)  # before this sighting counts itself
    with atomic_with_files():
        result = sighting_create(
            submitted_by=submitted_by,
            species=species,
            photos=photos,
            observed_at=observed_at,
            latitude=latitude,
            longitude=longitude,
            notes=notes,
            viewpoint=viewpoint,
        )
        if result.annotation_ids:
            job_ids = annotations_embed_enqueue(annotation_ids=result.annotation_ids, queue=queue)
            transaction.on_commit(lambda: _note_if_unsent(result=result, job_ids=job_ids))
    return result


def species_register(
    *, name: str, sensitive: bool = False, viewpoints: list[str] | None = None
) -> Species:
    """A new species whose model setting and vector index exist from the start."""
    species = species_create(name=name, sensitive=sensitive, viewpoints=viewpoints)
    species_model_setting(species=species)
    return species


def dataset_ingest(
    *,
    plan: ImportPlan,
    imported_by: AbstractBaseUser | None = None,
    progress: Callable[[int], object] | None = None,
) -> ImportResult:
    """Import a plan (:func:`catalogue.services.imports.dataset_import`), then queue (on
    ``bulk``) every photo of the species not yet embedded, which also picks up those of an
    earlier, interrupted import.

    Raises:
        ServiceError: As ``dataset_import``; nothing is imported or queued.
    """
    result = dataset_import(plan=plan, imported_by=imported_by, progress=progress)
    species_embeddings_enqueue(species=plan.species)
    return result


def annotation_correct(
    *,
    annotation: Annotation,
    changed_by: AbstractBaseUser,
    viewpoint: str | None = None,
    bbox: BBox | None = None,
) -> Annotation:
    """Correct an annotation's viewpoint or box
    (:func:`catalogue.services.annotations.annotation_update`) and search for the animal
    again: a new box changes the crop, so the photo is embedded again; a new viewpoint
    changes which gallery photos it is compared with (``Species.same_viewpoint_only``).

    Raises:
        ServiceError: As ``annotation_update``; nothing changes.
    """
    box_before, viewpoint_before = annotation.bbox, annotation.viewpoint
    with transaction.atomic():
        annotation_update(
            annotation=annotation, changed_by=changed_by, viewpoint=viewpoint, bbox=bbox
        )
        crop_changed = annotation.bbox != box_before
        if crop_changed or annotation.viewpoint != viewpoint_before:
            annotation_search_again(annotation=annotation, crop_changed=crop_changed)
    return annotation


def _identify_queue(*, submitted_by: AbstractBaseUser | None) -> str:
    """``identify`` for an uploader's first sightings, ``bulk`` beyond
    ``INTERACTIVE_PENDING_SIGHTINGS`` still processing, so one flood never delays the others."""
    pending = Encounter.objects.filter(
        submitted_by=submitted_by if submitted_by is not None and submitted_by.pk else None,
        status=Encounter.Status.PROCESSING,
    ).count()
    return "identify" if pending < settings.INTERACTIVE_PENDING_SIGHTINGS else "bulk"


def _note_if_unsent(*, result: SightingResult, job_ids: list[int]) -> None:
    result.processing_deferred = EmbeddingJob.objects.filter(
        pk__in=job_ids, state=EmbeddingJob.State.QUEUED, sent_at__isnull=True
    ).exists()
