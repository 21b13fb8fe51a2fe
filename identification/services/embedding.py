"""Embedding annotations: jobs recorded in the database, queued, sent and recovered.

Every job ends ``done`` or ``failed`` with a reason. Workers run them in batches
(:mod:`identification.services.embedding_run`). A job whose worker died is queued again by the
sweep (:func:`embedding_jobs_recover`) and fails after ``JOBS_MAX_ATTEMPTS`` starts.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from datetime import timedelta

from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import Q
from django.utils import timezone

from catalogue.models import Annotation, Species
from identification.models import (
    Embedding,
    EmbeddingJob,
    Identification,
    LocalFeatures,
    ModelVersion,
)
from identification.services.models import species_model_setting
from identification.services.search import embedding_index_drop_for_load, embedding_indexes_restore
from wildweb.jobs import task_send, worker_gone

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
