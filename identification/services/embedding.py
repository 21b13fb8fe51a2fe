"""Embedding annotations: jobs recorded in the database, run in batches by workers.

Every job ends ``done`` or ``failed`` with a reason. A photo that cannot be embedded fails
alone; the rest of its batch carries on. A job whose worker died is queued again by the
sweep (:func:`embedding_jobs_recover`) and fails after ``JOBS_MAX_ATTEMPTS`` starts.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from datetime import timedelta

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import F, Q
from django.utils import timezone
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
from identification.services.crops import annotation_crop, local_features_unsaved
from identification.services.models import model_version_embedder, species_model_setting
from identification.services.progress import identifications_fail
from identification.services.search import embedding_index_drop_for_load, embedding_indexes_restore
from wildweb.jobs import task_send, worker_gone, worker_name

logger = logging.getLogger(__name__)

EMBED_BATCH_SIZE = 16
# A job queued this recently may still be on its way to the broker (on_commit is running).
SEND_GRACE = timedelta(seconds=10)
# Errors that say nothing about the photo: the job is put back for another try.
TRANSIENT_ERRORS = (OSError, OperationalError, InterfaceError)
State = EmbeddingJob.State


def annotations_embed_enqueue(
    *,
    annotation_ids: list[int],
    version: ModelVersion | None = None,
    identify: bool = True,
    queue: str = "bulk",
) -> list[int]:
    """Record embedding jobs and send them to the workers once the transaction commits.

    Args:
        annotation_ids: Annotations to embed.
        version: Model version to embed with; default each species' active version.
        identify: Also queue the search for who each not-yet-identified animal is.
        queue: ``identify`` for an interactive upload, ``bulk`` for backlog work.

    Returns:
        Ids of the unfinished jobs (existing finished or failed jobs are not redone; queued
        ones already handed to the broker are not sent twice).
    """
    annotations = Annotation.objects.filter(pk__in=annotation_ids).select_related("species")
    job_ids: list[int] = []
    to_send: list[int] = []
    for annotation in annotations:
        target = version or species_model_setting(species=annotation.species).model_version
        job, _ = EmbeddingJob.objects.get_or_create(
            annotation=annotation, model_version=target, defaults={"queue": queue}
        )
        if job.state in (State.QUEUED, State.RUNNING):
            job_ids.append(job.pk)
        if job.state == State.QUEUED and job.sent_at is None:
            to_send.append(job.pk)
        if identify and annotation.individual_id is None:
            Identification.objects.get_or_create(annotation=annotation, defaults={"queue": queue})
    transaction.on_commit(lambda: embedding_jobs_dispatch(job_ids=to_send))
    return job_ids


def species_embeddings_enqueue(
    *, species: Species, version: ModelVersion | None = None
) -> list[int]:
    """Queue (on ``bulk``) every annotation of a species without a job under the version."""
    target = version or species_model_setting(species=species).model_version
    missing = list(
        Annotation.objects.filter(species=species)
        .exclude(pk__in=EmbeddingJob.objects.filter(model_version=target).values("annotation_id"))
        .values_list("pk", flat=True)
    )
    embedding_index_drop_for_load(species_id=species.pk, version=target, rows=len(missing))
    return annotations_embed_enqueue(annotation_ids=missing, version=target)


def embedding_jobs_dispatch(*, job_ids: list[int]) -> int:
    """Send queued jobs to their queues in batches; marks what the broker took as sent.

    A broker outage is not an error here: unsent jobs keep ``sent_at`` empty and the sweep
    sends them once the broker is back.

    Returns:
        How many jobs were handed to the broker.
    """
    from identification.tasks import embedding_jobs_run_task

    by_queue: dict[str, list[int]] = defaultdict(list)
    for pk, queue in (
        EmbeddingJob.objects.filter(pk__in=job_ids, state=State.QUEUED)
        .order_by("created_at", "pk")
        .values_list("pk", "queue")
    ):
        by_queue[queue].append(pk)
    sent = 0
    for queue, ids in by_queue.items():
        for index in range(math.ceil(len(ids) / EMBED_BATCH_SIZE)):
            batch = ids[index * EMBED_BATCH_SIZE : (index + 1) * EMBED_BATCH_SIZE]
            if not task_send(embedding_jobs_run_task, batch, queue=queue):
                return sent  # the broker is down; the rest would fail the same way
            EmbeddingJob.objects.filter(pk__in=batch).update(sent_at=timezone.now())
            sent += len(batch)
    return sent


def embedding_jobs_recover() -> int:
    """The sweep's part for embeddings: free dead workers' jobs, send what is not on its way.

    Sends the queued jobs never handed to the broker (it was down, or the job was freed) and
    those sent longer than ``JOBS_RESEND_SECONDS`` ago (a message lost inside Redis).

    Returns:
        How many jobs were sent.
    """
    embedding_jobs_release_dead()
    embedding_indexes_restore()
    now = timezone.now()
    pending = EmbeddingJob.objects.filter(state=State.QUEUED).filter(
        Q(sent_at__isnull=True, updated_at__lt=now - SEND_GRACE)
        | Q(sent_at__lt=now - timedelta(seconds=settings.JOBS_RESEND_SECONDS))
    )
    return embedding_jobs_dispatch(job_ids=list(pending.values_list("pk", flat=True)))


def embedding_jobs_release_dead(*, job_ids: list[int] | None = None) -> int:
    """Queue again the running jobs whose worker process is gone or outlived its time limit.

    Returns:
        How many jobs were freed.
    """
    stale_before = timezone.now() - timedelta(seconds=settings.EMBED_TIME_LIMIT + 60)
    running = EmbeddingJob.objects.filter(state=State.RUNNING)
    if job_ids is not None:
        running = running.filter(pk__in=job_ids)
    freed = 0
    for pk, worker, started_at in running.values_list("pk", "worker", "started_at"):
        if worker_gone(worker) or started_at is None or started_at < stale_before:
            freed += EmbeddingJob.objects.filter(pk=pk, state=State.RUNNING, worker=worker).update(
                state=State.QUEUED,
                sent_at=None,
                worker="",
                error=f"The worker {worker} stopped while embedding this photo.",
            )
    return freed


def embedding_jobs_run(*, job_ids: list[int]) -> list[int]:
    """Embed the still-queued jobs among ``job_ids`` that no other worker holds.

    Each photo succeeds or fails on its own: one unreadable photo or bad box fails its job
    (and its sighting's search) with the reason, never the batch.

    Returns:
        Ids of the annotations embedded by this call.
    """
    embedding_jobs_release_dead(job_ids=job_ids)  # a redelivered batch whose worker died
    claimed = _jobs_claim(job_ids=job_ids)
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
    embedding_indexes_restore(pairs={(j.annotation.species_id, j.model_version_id) for j in jobs})
    _identifications_dispatch(annotation_ids=embedded)
    _model_switch_checks_dispatch(version_ids=list(by_version), annotation_ids=embedded)
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


def _jobs_claim(*, job_ids: list[int]) -> list[int]:
    """Mark the queued jobs among ``job_ids`` as running here; fail those started too often.

    A batch not full is topped up with the oldest other queued jobs of the same queue, so a
    backlog of one-photo sightings is embedded 16 at a time (their own messages then find
    nothing left to do).
    """
    with transaction.atomic():
        queued = EmbeddingJob.objects.select_for_update(skip_locked=True).filter(state=State.QUEUED)
        fields = ("pk", "attempts", "error", "annotation_id")
        jobs = list(queued.filter(pk__in=job_ids).values_list(*fields))
        queue = EmbeddingJob.objects.filter(pk__in=job_ids).values_list("queue", flat=True)[:1]
        if len(jobs) < EMBED_BATCH_SIZE:
            jobs += list(
                queued.filter(queue__in=queue)
                .exclude(pk__in=job_ids)
                .order_by("created_at", "pk")
                .values_list(*fields)[: EMBED_BATCH_SIZE - len(jobs)]
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
            keypoints = local_features_unsaved(
                annotation_id=job.annotation_id, crop=crops[job.pk], method=methods[species.pk]
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
            if not task_send(annotation_identify_task, annotation_id):
                break  # the broker is down; the sweep sends the rest

    if annotation_ids:
        transaction.on_commit(dispatch)
