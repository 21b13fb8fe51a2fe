"""Running embedding jobs: claim a batch, crop, embed, extract keypoints, store in bulk.

Each photo succeeds or fails on its own: one unreadable photo or bad box fails its job (and
its sighting's search) with the reason, never the batch. Queueing and recovery are in
:mod:`identification.services.embedding`.
"""

from __future__ import annotations

import logging
from collections import defaultdict

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone
from PIL import Image as PILImage

from identification.models import (
    Embedding,
    EmbeddingJob,
    Identification,
    LocalFeatures,
    ModelVersion,
    SpeciesModel,
)
from identification.selectors.fair import jobs_fair_order, queue_is_fair
from identification.services.calibration import calibration_request_if_embedded
from identification.services.crops import annotation_crop, local_features_extract
from identification.services.embedding import (
    EMBED_BATCH_SIZE,
    TRANSIENT_ERRORS,
    embedding_jobs_release_dead,
)
from identification.services.models import model_version_embedder, species_model_setting
from identification.services.progress import identifications_fail
from identification.services.search import embedding_indexes_restore
from wildweb.jobs import task_send, worker_name

logger = logging.getLogger(__name__)
State = EmbeddingJob.State


def embedding_jobs_run(*, job_ids: list[int], queue: str | None = None) -> list[int]:
    """Embed the still-queued jobs among ``job_ids`` that no other worker holds.

    Each photo succeeds or fails on its own: one unreadable photo or bad box fails its job
    (and its sighting's search) with the reason, never the batch.

    Args:
        job_ids: The message's jobs (on a fair queue only a nudge; may be empty there).
        queue: Their queue; default: read from the jobs.

    Returns:
        Ids of the annotations embedded by this call.
    """
    embedding_jobs_release_dead(job_ids=job_ids)  # a redelivered batch whose worker died
    claimed = _jobs_claim(job_ids=job_ids, queue=queue)
    embedded: list[int] = []
    try:
        jobs = list(
            EmbeddingJob.objects.filter(pk__in=claimed).select_related(
                "annotation__image", "annotation__species", "model_version"
            )
        )
        by_version: dict[int, list[EmbeddingJob]] = defaultdict(list)
        for job in jobs:
            by_version[job.model_version_id].append(job)
        for version_jobs in by_version.values():
            embedded += _version_jobs_embed(version_jobs=version_jobs)
    finally:
        # Whatever stopped this call (a time limit, a lost database), nothing stays running.
        EmbeddingJob.objects.filter(pk__in=claimed, state=State.RUNNING).update(
            state=State.QUEUED, sent_at=None, worker=""
        )
    # A bulk load's last batch builds the index it dropped.
    embedding_indexes_restore(species_ids={job.annotation.species_id for job in jobs})
    _identifications_dispatch(annotation_ids=embedded)
    _model_switch_checks_dispatch(version_ids=list(by_version), annotation_ids=embedded)
    # An import's last labelled vectors: its ranking method is chosen again by itself.
    calibration_request_if_embedded(jobs=[job for job in jobs if job.annotation_id in embedded])
    return embedded


def _model_switch_checks_dispatch(*, version_ids: list[int], annotation_ids: list[int]) -> None:
    """A batch under a promoted (pending) version may be the species' last one: check."""
    from identification.tasks import species_model_switch_task

    for species_id in (
        SpeciesModel.objects.filter(
            pending_version_id__in=version_ids,
            species__annotations__pk__in=annotation_ids,
        )
        .values_list("species_id", flat=True)
        .distinct()
    ):
        task_send(species_model_switch_task, species_id)


def _jobs_claim(*, job_ids: list[int], queue: str | None) -> list[int]:
    """Mark the queued jobs among ``job_ids`` as running here; fail those started too often.

    A batch not full is topped up with the oldest other queued jobs of the same queue, so a
    backlog of one-photo sightings is embedded 16 at a time (their own messages then find
    nothing left to do). On a fair queue the message is only a nudge: the batch is the
    queue's next jobs in round-robin order across uploaders, whichever jobs it named.
    """
    with transaction.atomic():
        queue = queue or job_queue(job_ids=job_ids)
        jobs = (
            _fair_batch(queue=queue)
            if queue_is_fair(queue)
            else _oldest_batch(queue=queue, job_ids=job_ids)
        )
        worn = [job for job in jobs if job[1] >= settings.JOBS_MAX_ATTEMPTS]
        for pk, attempts, error, annotation_id in worn:
            _job_fail(
                job_id=pk,
                annotation_id=annotation_id,
                reason=f"Gave up after {attempts} tries. {error}".strip(),
            )
        claimed = [job[0] for job in jobs if job[1] < settings.JOBS_MAX_ATTEMPTS]
        EmbeddingJob.objects.filter(pk__in=claimed).update(
            state=State.RUNNING,
            worker=worker_name(),
            started_at=timezone.now(),
            attempts=F("attempts") + 1,
        )
    return claimed


def job_queue(*, job_ids: list[int]) -> str | None:
    """The queue of a message's embedding jobs (one message, one queue)."""
    return EmbeddingJob.objects.filter(pk__in=job_ids).values_list("queue", flat=True).first()


# What a claim reads of each job it locks.
CLAIM_FIELDS = ("pk", "attempts", "error", "annotation_id")


def _lockable_queued() -> QuerySet:
    """Queued jobs, locked by the query that reads them; those another worker has locked are
    skipped (it is claiming them), never waited for."""
    return EmbeddingJob.objects.select_for_update(skip_locked=True).filter(state=State.QUEUED)


def _oldest_batch(*, queue: str | None, job_ids: list[int]) -> list[tuple]:
    """The message's own queued jobs, topped up with its queue's oldest."""
    jobs = list(_lockable_queued().filter(pk__in=job_ids).values_list(*CLAIM_FIELDS))
    if len(jobs) < EMBED_BATCH_SIZE:
        jobs += list(
            _lockable_queued()
            .filter(queue=queue)
            .exclude(pk__in=job_ids)
            .order_by("created_at", "pk")
            .values_list(*CLAIM_FIELDS)[: EMBED_BATCH_SIZE - len(jobs)]
        )
    return jobs


def _fair_batch(*, queue: str) -> list[tuple]:
    """The queue's next ``EMBED_BATCH_SIZE`` jobs in round-robin order across uploaders."""
    order = jobs_fair_order(
        waiting=EmbeddingJob.objects.filter(state=State.QUEUED, queue=queue), queue=queue
    )
    jobs: list[tuple] = []
    for start in range(0, len(order), EMBED_BATCH_SIZE):
        wanted = order[start : start + EMBED_BATCH_SIZE]
        locked = {
            job[0]: job
            for job in _lockable_queued().filter(pk__in=wanted).values_list(*CLAIM_FIELDS)
        }
        jobs += [locked[pk] for pk in wanted if pk in locked][: EMBED_BATCH_SIZE - len(jobs)]
        if len(jobs) == EMBED_BATCH_SIZE:
            break
    return jobs


def _version_jobs_embed(*, version_jobs: list[EmbeddingJob]) -> list[int]:
    version = version_jobs[0].model_version
    try:
        embedder = model_version_embedder(version=version)
    except Exception as error:  # e.g. a missing model file: retried, then failed with this
        for job in version_jobs:
            _job_release(job=job, error=error)
        return []
    crops: dict[int, PILImage.Image] = {}
    for job in version_jobs:
        try:
            crops[job.pk] = annotation_crop(annotation=job.annotation)
        except TRANSIENT_ERRORS as error:
            _job_release(job=job, error=error)
        except Exception as error:
            _job_fail_error(job=job, error=error, what="The photo could not be cropped")
    ready = [job for job in version_jobs if job.pk in crops]
    try:
        vectors: list[np.ndarray | None] = list(embedder.embed_images([crops[j.pk] for j in ready]))
    except SoftTimeLimitExceeded:
        raise
    except Exception:
        logger.exception("embedding a batch failed; embedding its photos one by one")
        vectors = [None] * len(ready)
    methods: dict[int, str] = {}  # each species' keypoint method
    have_keypoints = set(  # (annotation, method) pairs stored earlier, e.g. by a re-embedding
        LocalFeatures.objects.filter(
            annotation_id__in=[j.annotation_id for j in ready]
        ).values_list("annotation_id", "method")
    )
    computed: list[tuple[EmbeddingJob, np.ndarray, LocalFeatures | None]] = []
    for job, vector in zip(ready, vectors):
        try:
            if vector is None:
                vector = embedder.embed_images([crops[job.pk]])[0]
            if not np.isfinite(vector).all():
                raise ValueError("the network returned a vector that is not finite")
            species = job.annotation.species
            if species.pk not in methods:
                methods[species.pk] = species_model_setting(species=species).local_method
            method = methods[species.pk]
            keypoints = (
                None
                if (job.annotation_id, method) in have_keypoints
                else local_features_extract(
                    annotation_id=job.annotation_id, crop=crops[job.pk], method=method
                )
            )
            computed.append((job, vector, keypoints))
        except SoftTimeLimitExceeded:
            raise
        except TRANSIENT_ERRORS as error:
            _job_release(job=job, error=error)
        except Exception as error:
            _job_fail_error(job=job, error=error, what="The photo could not be embedded")
    try:
        with transaction.atomic():  # the whole batch in a few statements
            _results_store(computed=computed, version=version)
        return [job.annotation_id for job, _, _ in computed]
    except SoftTimeLimitExceeded:
        raise
    except Exception:
        logger.exception("storing a batch failed; storing its photos one by one")
    embedded: list[int] = []
    for item in computed:
        try:
            with transaction.atomic():
                _results_store(computed=[item], version=version)
            embedded.append(item[0].annotation_id)
        except SoftTimeLimitExceeded:
            raise
        except TRANSIENT_ERRORS as error:
            _job_release(job=item[0], error=error)
        except Exception as error:
            _job_fail_error(job=item[0], error=error, what="The photo's vector was not stored")
    return embedded


def _results_store(
    *, computed: list[tuple[EmbeddingJob, np.ndarray, LocalFeatures | None]], version: ModelVersion
) -> None:
    """Write vectors, keypoints and job states in bulk (one statement per table)."""
    Embedding.objects.bulk_create(
        [
            Embedding(
                annotation_id=job.annotation_id,
                model_version=version,
                species_id=job.annotation.species_id,
                vector=vector.tolist(),
            )
            for job, vector, _ in computed
        ],
        update_conflicts=True,
        unique_fields=["annotation", "model_version"],
        update_fields=["vector", "species"],
    )
    LocalFeatures.objects.bulk_create(
        [features for _, _, features in computed if features is not None],
        ignore_conflicts=True,
    )
    EmbeddingJob.objects.filter(pk__in=[job.pk for job, _, _ in computed]).update(
        state=State.DONE, error="", worker=""
    )


def _job_release(*, job: EmbeddingJob, error: BaseException) -> None:
    """Put a job back after an error that may pass (the sweep sends it again)."""
    logger.warning("embedding job %s interrupted: %s", job.pk, error)
    EmbeddingJob.objects.filter(pk=job.pk, state=State.RUNNING).update(
        state=State.QUEUED, sent_at=None, worker="", error=f"{type(error).__name__}: {error}"
    )


def _job_fail_error(*, job: EmbeddingJob, error: BaseException, what: str) -> None:
    logger.warning("embedding job %s failed", job.pk, exc_info=error)
    _job_fail(
        job_id=job.pk,
        annotation_id=job.annotation_id,
        reason=f"{what} ({type(error).__name__}: {error}).",
    )


def _job_fail(*, job_id: int, annotation_id: int, reason: str) -> None:
    """Fail one job for good; the search for its animal fails with the same reason."""
    EmbeddingJob.objects.filter(pk=job_id).update(
        state=State.FAILED, error=reason[:1000], worker=""
    )
    job = EmbeddingJob.objects.select_related("annotation__species").get(pk=job_id)
    if (
        job.model_version_id
        == species_model_setting(species=job.annotation.species).model_version_id
    ):
        identifications_fail(annotation_ids=[annotation_id], reason=reason)


def _identifications_dispatch(*, annotation_ids: list[int]) -> None:
    from identification.services.matching import identifications_dispatch

    identifications_dispatch(
        identification_ids=list(
            Identification.objects.filter(
                annotation_id__in=annotation_ids, state=Identification.State.QUEUED
            ).values_list("pk", flat=True)
        )
    )
