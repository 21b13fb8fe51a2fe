"""Ranking the known individuals an annotated animal could be."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import F, Q
from django.utils import timezone

from catalogue.models import Annotation
from identification.models import (
    Embedding,
    EmbeddingJob,
    Identification,
    LocalFeatures,
    MatchCandidate,
    SpeciesModel,
)
from identification.selectors import nearest_identified_annotations
from identification.services.embedding import local_features_ensure
from identification.services.models import species_model_setting
from identification.services.progress import encounter_status_refresh, identifications_fail
from wildweb.jobs import task_send, worker_gone, worker_name

if TYPE_CHECKING:
    from reid.local_features import Keypoints

NEIGHBOURS = 50  # annotations fetched from the vector index
SHORTLIST = 10  # individuals re-scored with keypoints
PHOTOS_PER_CANDIDATE = 2  # each shortlisted individual's best photos matched with keypoints


class NotEmbeddedYet(Exception):
    """The annotation has no vector under the species' model yet; retry later."""


@dataclass
class Scored:
    individual_id: int
    annotation_id: int
    cosine: float
    inliers: int | None = None
    fused: float = 0.0
    pairs: list | None = None


class SearchFailed(Exception):
    """The search itself failed (e.g. a database timeout); the task tries it again."""


def annotation_identify(*, annotation_id: int) -> Identification:
    """Rank candidates for one annotation and store them (replacing earlier ones).

    The search is claimed as ``running``; it ends ``ready``, or ``failed`` with the reason
    (also when its photo could not be embedded). Once no photo of the sighting is pending,
    the sighting shows "Candidates ready".

    Raises:
        NotEmbeddedYet: No vector yet under the species' active model.
        SearchFailed: The search failed; the reason is stored, and a retry that succeeds
            clears it.
    """
    annotation = Annotation.objects.select_related("species", "image__encounter").get(
        pk=annotation_id
    )
    identification, _ = Identification.objects.get_or_create(annotation=annotation)
    setting = species_model_setting(species=annotation.species)
    version = setting.model_version
    embedding = Embedding.objects.filter(annotation=annotation, model_version=version).first()
    if embedding is None:
        job = EmbeddingJob.objects.filter(annotation=annotation, model_version=version).first()
        if job is not None and job.state == EmbeddingJob.State.FAILED:
            identifications_fail(annotation_ids=[annotation.pk], reason=job.error)
            identification.refresh_from_db()
            return identification
        raise NotEmbeddedYet(f"annotation {annotation_id} has no {version.name} vector yet")
    if identification.attempts >= settings.JOBS_MAX_ATTEMPTS and identification.state in (
        Identification.PENDING_STATES
    ):
        identifications_fail(
            annotation_ids=[annotation.pk],
            reason=f"Gave up after {identification.attempts} tries. {identification.error}",
        )
        identification.refresh_from_db()
        return identification
    Identification.objects.filter(pk=identification.pk).exclude(
        state=Identification.State.DECIDED
    ).update(
        state=Identification.State.RUNNING,
        worker=worker_name(),
        started_at=timezone.now(),
        attempts=F("attempts") + 1,
    )
    try:
        scored = candidates_score(
            species_id=annotation.species_id,
            setting=setting,
            vector=np.asarray(embedding.vector, dtype=np.float32),
            query_keypoints=lambda: gallery_keypoints(annotation_id=annotation.pk),
            exclude_annotation_id=annotation.pk,
        )
    except SoftTimeLimitExceeded:
        raise
    except Exception as error:
        # A timeout is an error the user sees, never an empty candidate list.
        identifications_fail(
            annotation_ids=[annotation.pk],
            reason=f"The search for candidates failed ({type(error).__name__}: {error}).",
        )
        if isinstance(error, DatabaseError):
            raise SearchFailed(str(error)) from error
        raise
    with transaction.atomic():
        identification = Identification.objects.select_for_update().get(pk=identification.pk)
        identification.candidates.all().delete()
        MatchCandidate.objects.bulk_create(
            [
                MatchCandidate(
                    identification=identification,
                    rank=rank,
                    individual_id=s.individual_id,
                    gallery_annotation_id=s.annotation_id,
                    embedding_score=s.cosine,
                    inlier_count=s.inliers,
                    fused_score=s.fused,
                    match_pairs=s.pairs or [],
                )
                for rank, s in enumerate(scored, start=1)
            ]
        )
        identification.model_version = version
        identification.probably_new = (
            not scored or scored[0].fused < setting.new_individual_threshold
        )
        identification.error = ""
        identification.worker = ""
        if identification.state != Identification.State.DECIDED:
            identification.state = Identification.State.READY
        identification.save()
        encounter_status_refresh(encounter_id=annotation.image.encounter_id)
    return identification


def identifications_dispatch(*, identification_ids: list[int]) -> int:
    """Send searches to their queues; what the broker took is marked sent (see the sweep).

    Returns:
        How many were handed to the broker.
    """
    from identification.tasks import annotation_identify_task

    sent = 0
    for pk, annotation_id, queue in (
        Identification.objects.filter(pk__in=identification_ids)
        .order_by("created_at", "pk")
        .values_list("pk", "annotation_id", "queue")
    ):
        if not task_send(annotation_identify_task, annotation_id, queue=queue):
            break  # the broker is down; the sweep sends the rest
        Identification.objects.filter(pk=pk).update(sent_at=timezone.now())
        sent += 1
    return sent


def identifications_recover() -> int:
    """The sweep's part for searches: free dead workers' searches, send what is not on its way.

    A queued search is sent when its photo is embedded but the search was never handed to the
    broker, or was sent longer than ``JOBS_RESEND_SECONDS`` ago. A queued search whose photo
    failed to embed fails with the same reason.

    Returns:
        How many were sent.
    """
    now = timezone.now()
    stale_before = now - timedelta(seconds=settings.TASK_TIME_LIMIT + 60)
    for pk, worker, started_at in Identification.objects.filter(
        state=Identification.State.RUNNING
    ).values_list("pk", "worker", "started_at"):
        if worker_gone(worker) or started_at is None or started_at < stale_before:
            Identification.objects.filter(
                pk=pk, state=Identification.State.RUNNING, worker=worker
            ).update(
                state=Identification.State.QUEUED,
                sent_at=None,
                worker="",
                error=f"The worker {worker} stopped during the search.",
            )
    queued = Identification.objects.filter(state=Identification.State.QUEUED)
    for annotation_id, reason in EmbeddingJob.objects.filter(
        state=EmbeddingJob.State.FAILED, annotation_id__in=queued.values("annotation_id")
    ).values_list("annotation_id", "error"):
        identifications_fail(annotation_ids=[annotation_id], reason=reason)
    embedded = EmbeddingJob.objects.filter(state=EmbeddingJob.State.DONE).values("annotation_id")
    due = queued.filter(
        Q(
            sent_at__isnull=True,
            updated_at__lt=now - timedelta(seconds=10),
            annotation_id__in=embedded,
        )
        | Q(sent_at__lt=now - timedelta(seconds=settings.JOBS_RESEND_SECONDS))
    )
    return identifications_dispatch(identification_ids=list(due.values_list("pk", flat=True)))


def candidates_score(
    *,
    species_id: int,
    setting: SpeciesModel,
    vector: np.ndarray,
    query_keypoints: Callable[[], Keypoints],
    method: str | None = None,
    exclude_annotation_id: int | None = None,
    shortlist: int = SHORTLIST,
) -> list[Scored]:
    """Embedding neighbours → best per individual → keypoint re-scoring → fused ranking.

    Args:
        species_id: Only this species' individuals are candidates.
        setting: The species' model setting (version, calibration, default method).
        vector: The query's embedding under ``setting.model_version``.
        query_keypoints: Returns the query's keypoints; called only if keypoints are needed.
        method: ``embedding``, ``local`` or ``fused``; default the species' own.
        exclude_annotation_id: The query's own annotation, never its own candidate.
    """
    from reid.fusion import FusionCalibrator
    from reid.local_features import match

    version = setting.model_version
    neighbours = nearest_identified_annotations(
        species_id=species_id,
        version_id=version.pk,
        dim=version.embedding_dim,
        vector=vector,
        k=NEIGHBOURS,
        exclude_annotation_id=exclude_annotation_id,
    )
    per_individual: dict[int, list] = defaultdict(list)
    for neighbour in neighbours:
        per_individual[neighbour.individual_id].append(neighbour)
    ranked = sorted(per_individual.values(), key=lambda hits: -hits[0].cosine)[:shortlist]

    method = method or setting.ranking_method
    query = query_keypoints() if method != SpeciesModel.RankingMethod.EMBEDDING else None
    calibrator = (
        FusionCalibrator.from_dict(setting.calibration)
        if setting.calibration
        else FusionCalibrator.default()
    )
    scored: list[Scored] = []
    for hits in ranked:
        best = Scored(
            individual_id=hits[0].individual_id,
            annotation_id=hits[0].annotation_id,
            cosine=hits[0].cosine,
        )
        if query is not None:
            for hit in hits[:PHOTOS_PER_CANDIDATE]:
                result = match(query, gallery_keypoints(annotation_id=hit.annotation_id))
                if best.inliers is None or result.inliers > best.inliers:
                    best.inliers, best.annotation_id = result.inliers, hit.annotation_id
                    best.cosine = hit.cosine
                    best.pairs = np.round(result.pairs, 1).tolist()
        best.fused = float(
            calibrator.predict(np.array([best.cosine]), np.array([best.inliers or 0]))[0]
        )
        scored.append(best)
    key = {
        SpeciesModel.RankingMethod.EMBEDDING: lambda s: -s.cosine,
        SpeciesModel.RankingMethod.LOCAL: lambda s: (-(s.inliers or 0), -s.cosine),
        SpeciesModel.RankingMethod.FUSED: lambda s: -s.fused,
    }[method]
    return sorted(scored, key=key)


def gallery_keypoints(*, annotation_id: int) -> Keypoints:
    """Cached keypoints of an annotation, extracted on first use."""
    from reid.local_features import Keypoints

    cached = LocalFeatures.objects.filter(annotation_id=annotation_id).first()
    if cached is None:
        cached = local_features_ensure(
            annotation=Annotation.objects.select_related("image").get(pk=annotation_id)
        )
    return Keypoints.from_bytes(bytes(cached.data))


def species_identifications_refresh(*, species_id: int) -> int:
    """Re-rank every undecided animal of a species (after its model changed), on ``bulk``."""
    identifications = Identification.objects.filter(annotation__species_id=species_id).exclude(
        state=Identification.State.DECIDED
    )
    identification_ids = list(identifications.values_list("pk", flat=True))
    identifications.update(queue="bulk", sent_at=None)
    transaction.on_commit(lambda: identifications_dispatch(identification_ids=identification_ids))
    return len(identification_ids)
