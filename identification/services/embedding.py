"""Embedding annotations: jobs recorded in the database, run in batches by workers."""

from __future__ import annotations

import math
from collections import defaultdict

from django.db import transaction
from PIL import Image as PILImage

from catalogue.models import Annotation, Species
from identification.models import (
    Embedding,
    EmbeddingJob,
    Identification,
    LocalFeatures,
    ModelVersion,
    SpeciesModel,
)
from identification.services.models import model_version_embedder, species_model_setting

EMBED_BATCH_SIZE = 16


def annotations_embed_enqueue(
    *, annotation_ids: list[int], version: ModelVersion | None = None, identify: bool = True
) -> list[int]:
    """Record embedding jobs and send them to the workers once the transaction commits.

    Args:
        annotation_ids: Annotations to embed.
        version: Model version to embed with; default each species' active version.
        identify: Also queue the search for who each not-yet-identified animal is.

    Returns:
        Ids of the jobs that were queued (existing finished jobs are not redone).
    """
    annotations = Annotation.objects.filter(pk__in=annotation_ids).select_related("species")
    job_ids: list[int] = []
    for annotation in annotations:
        target = version or species_model_setting(species=annotation.species).model_version
        job, _ = EmbeddingJob.objects.get_or_create(annotation=annotation, model_version=target)
        if job.state != EmbeddingJob.State.DONE:
            job_ids.append(job.pk)
        if identify and annotation.individual_id is None:
            Identification.objects.get_or_create(annotation=annotation)
    transaction.on_commit(lambda: embedding_jobs_dispatch(job_ids=job_ids))
    return job_ids


def species_embeddings_enqueue(
    *, species: Species, version: ModelVersion | None = None
) -> list[int]:
    """Queue every annotation of a species that has no embedding job under the version yet."""
    target = version or species_model_setting(species=species).model_version
    missing = (
        Annotation.objects.filter(species=species)
        .exclude(pk__in=EmbeddingJob.objects.filter(model_version=target).values("annotation_id"))
        .values_list("pk", flat=True)
    )
    return annotations_embed_enqueue(annotation_ids=list(missing), version=target)


def embedding_jobs_dispatch(*, job_ids: list[int]) -> None:
    from identification.tasks import embedding_jobs_run_task

    batches = math.ceil(len(job_ids) / EMBED_BATCH_SIZE)
    for index in range(batches):
        embedding_jobs_run_task.delay(
            job_ids[index * EMBED_BATCH_SIZE : (index + 1) * EMBED_BATCH_SIZE]
        )


def embedding_jobs_requeue_pending() -> int:
    """Send every queued job again (after a lost broker message); claiming keeps it idempotent."""
    job_ids = list(
        EmbeddingJob.objects.filter(state=EmbeddingJob.State.QUEUED)
        .order_by("created_at")
        .values_list("pk", flat=True)
    )
    embedding_jobs_dispatch(job_ids=job_ids)
    return len(job_ids)


def embedding_jobs_run(*, job_ids: list[int]) -> list[int]:
    """Embed the still-queued jobs among ``job_ids`` that no other worker holds.

    The claim (row lock) and the stored vectors commit together: if this process dies, the
    lock goes with its connection and the jobs stay queued for the retry.

    Returns:
        Ids of the annotations embedded by this call.
    """
    embedded: list[int] = []
    with transaction.atomic():
        jobs = list(
            EmbeddingJob.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(pk__in=job_ids, state=EmbeddingJob.State.QUEUED)
            .select_related("annotation__image", "annotation__species", "model_version")
        )
        by_version: dict[int, list[EmbeddingJob]] = defaultdict(list)
        for job in jobs:
            by_version[job.model_version_id].append(job)
        for version_jobs in by_version.values():
            version = version_jobs[0].model_version
            embedder = model_version_embedder(version=version)
            crops = [annotation_crop(annotation=job.annotation) for job in version_jobs]
            vectors = embedder.embed_images(crops)
            Embedding.objects.bulk_create(
                [
                    Embedding(
                        annotation=job.annotation,
                        model_version=version,
                        species_id=job.annotation.species_id,
                        vector=vector.tolist(),
                    )
                    for job, vector in zip(version_jobs, vectors)
                ]
            )
            local_methods: dict[int, str] = {}
            for job, crop in zip(version_jobs, crops):
                species = job.annotation.species
                if species.pk not in local_methods:
                    local_methods[species.pk] = species_model_setting(species=species).local_method
                local_features_ensure(
                    annotation=job.annotation, crop=crop, method=local_methods[species.pk]
                )
            EmbeddingJob.objects.filter(pk__in=[job.pk for job in version_jobs]).update(
                state=EmbeddingJob.State.DONE
            )
            embedded.extend(job.annotation_id for job in version_jobs)
        transaction.on_commit(lambda: _identifications_dispatch(annotation_ids=embedded))
        # A batch under a promoted (pending) version may be the species' last one.
        pending_species = list(
            SpeciesModel.objects.filter(
                pending_version_id__in=list(by_version),
                species_id__in={job.annotation.species_id for job in jobs},
            ).values_list("species_id", flat=True)
        )
        transaction.on_commit(lambda: _model_switch_checks_dispatch(species_ids=pending_species))
    return embedded


def _model_switch_checks_dispatch(*, species_ids: list[int]) -> None:
    from identification.tasks import species_model_switch_task

    for species_id in species_ids:
        species_model_switch_task.delay(species_id)


def annotation_crop(*, annotation: Annotation) -> PILImage.Image:
    """The annotated animal: its box, rotated upright by ``theta`` (radians), as RGB."""
    with annotation.image.file.open("rb") as handle:
        image = PILImage.open(handle)
        image.load()
    image = image.convert("RGB")
    x, y, w, h = annotation.bbox
    if annotation.theta:
        centre = (x + w / 2, y + h / 2)
        image = image.rotate(
            math.degrees(annotation.theta), center=centre, resample=PILImage.BILINEAR
        )
    left, top = max(0, int(round(x))), max(0, int(round(y)))
    right, bottom = min(image.width, int(round(x + w))), min(image.height, int(round(y + h)))
    return image.crop((left, top, max(right, left + 1), max(bottom, top + 1)))


def local_features_ensure(
    *, annotation: Annotation, method: str, crop: PILImage.Image | None = None
) -> LocalFeatures:
    """The annotation's cached keypoints of one method, extracted and stored on first use."""
    cached = LocalFeatures.objects.filter(annotation=annotation, method=method).first()
    if cached is not None:
        return cached
    from reid.local_features import extract

    keypoints = extract(crop or annotation_crop(annotation=annotation), method=method)
    features, _ = LocalFeatures.objects.get_or_create(
        annotation=annotation,
        method=method,
        defaults={"data": keypoints.to_bytes(), "keypoint_count": len(keypoints)},
    )
    return features


def _identifications_dispatch(*, annotation_ids: list[int]) -> None:
    from identification.tasks import annotation_identify_task

    for annotation_id in Identification.objects.filter(
        annotation_id__in=annotation_ids, state=Identification.State.QUEUED
    ).values_list("annotation_id", flat=True):
        annotation_identify_task.delay(annotation_id)


def annotation_search_again(*, annotation: Annotation, crop_changed: bool) -> None:
    """Search again for who an animal is after its box or viewpoint was corrected.

    A new crop makes every stored vector and keypoint of the annotation stale: they are
    dropped and the annotation is embedded again, which queues the search. Otherwise only the
    search runs again.
    """
    if crop_changed:
        Embedding.objects.filter(annotation=annotation).delete()
        LocalFeatures.objects.filter(annotation=annotation).delete()
        EmbeddingJob.objects.filter(annotation=annotation).delete()
        Identification.objects.filter(annotation=annotation).exclude(
            state=Identification.State.DECIDED
        ).update(state=Identification.State.QUEUED)
        annotations_embed_enqueue(annotation_ids=[annotation.pk])
        return
    if annotation.individual_id is None:
        annotations_identify_enqueue(annotation_ids=[annotation.pk])


def annotations_identify_enqueue(*, annotation_ids: list[int]) -> None:
    """Rank these (already embedded) animals' candidates again, once the transaction commits."""

    def dispatch() -> None:
        from identification.tasks import annotation_identify_task

        for annotation_id in annotation_ids:
            annotation_identify_task.delay(annotation_id)

    if annotation_ids:
        transaction.on_commit(dispatch)
