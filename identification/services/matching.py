"""Ranking the known individuals an annotated animal could be."""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import timedelta
from typing import TYPE_CHECKING

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Exists, F, OuterRef, Q
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
from identification.selectors.fair import jobs_fair_order, queue_is_fair
from identification.selectors.search import (
    SearchScope,
    nearest_identified_annotations,
    viewpoint_scope,
)
from identification.services.crops import local_features_ensure
from identification.services.models import species_model_setting
from identification.services.progress import encounter_status_refresh, identifications_fail
from reid.ranking import (
    NEEDS_LOCAL,
    NEIGHBOURS,
    Candidate,
    Neighbour,
    photos_per_candidate,
    photos_to_match,
    rank,
    shortlist,
)
from wildweb.jobs import task_send, worker_gone, worker_name

if TYPE_CHECKING:
    from reid.fusion import FusionCalibrator
    from reid.local_features import Keypoints, Match


class NotEmbeddedYet(Exception):
    """The annotation has no vector under the species' model yet; retry later."""


class SearchFailed(Exception):
    """The search itself failed (e.g. a database timeout); the task tries it again."""


def annotation_identify(*, annotation_id: int) -> Identification:
    """Rank candidates for one annotation and store them (replacing earlier ones).

    Each stored candidate keeps the score its ranking method ordered it by (``score``, which
    the review combines photos by) and its calibrated probability of being the same
    individual (``fused_score``), whatever the method.

    The search is claimed as ``running`` (:func:`identification_claim`); it ends ``ready``,
    or ``failed`` with the reason (also when its photo could not be embedded). When another
    worker has it, or it is decided, it is returned unchanged. Once no photo of the sighting
    is pending, the sighting shows "Candidates ready".

    Raises:
        NotEmbeddedYet: No vector yet under the species' active model.
        SearchFailed: The search failed; the reason is stored, and a retry that succeeds
            clears it.
    """
    annotation = _annotation_load(annotation_id=annotation_id)
    identification, _ = Identification.objects.get_or_create(annotation=annotation)
    version = species_model_setting(species=annotation.species).model_version
    if not Embedding.objects.filter(annotation=annotation, model_version=version).exists():
        job = EmbeddingJob.objects.filter(annotation=annotation, model_version=version).first()
        if job is not None and job.state == EmbeddingJob.State.FAILED:
            identifications_fail(annotation_ids=[annotation.pk], reason=job.error)
            identification.refresh_from_db()
            return identification
        raise NotEmbeddedYet(f"annotation {annotation_id} has no {version.name} vector yet")
    if _identification_give_up_if_worn(identification=identification) or (
        identification_claim(identification=identification) is None
    ):
        identification.refresh_from_db()
        return identification
    return _identification_search(identification=identification, annotation=annotation)


def identification_next_run(*, queue: str) -> Identification | None:
    """What a nudge on a fair queue does: claim the search whose turn it is, and run it.

    The turn is :func:`identification.selectors.fair.jobs_fair_order`'s among the queue's
    waiting searches whose photo is embedded. A row another worker is claiming is skipped
    (``SKIP LOCKED``), so workers never wait for each other nor take the same search.

    A search that fails for a reason that may pass is tried again by itself, with the
    retries of :func:`annotation_identify`'s task.

    Returns:
        The search run here, or ``None`` when none was waiting (other nudges took them).
    """
    from identification.tasks import annotation_identify_task

    claimed = _identification_claim_next(queue=queue)
    if claimed is None:
        return None
    annotation = _annotation_load(annotation_id=claimed.annotation_id)
    try:
        return _identification_search(identification=claimed, annotation=annotation)
    except (NotEmbeddedYet, SearchFailed):
        task_send(annotation_identify_task, annotation.pk, queue=queue, countdown=2)
        claimed.refresh_from_db()
        return claimed


# How many of a fair queue's next searches a nudge locks at once (it usually claims the first).
NEXT_LOCK_CHUNK = 8


def _identification_claim_next(*, queue: str) -> Identification | None:
    embedded = Embedding.objects.filter(
        annotation_id=OuterRef("annotation_id"),
        model_version_id=OuterRef("annotation__species__model_setting__model_version_id"),
    )
    waiting = Identification.objects.filter(
        Exists(embedded), queue=queue, state=Identification.State.QUEUED
    )
    order = jobs_fair_order(waiting=waiting, queue=queue)
    for start in range(0, len(order), NEXT_LOCK_CHUNK):
        chunk = order[start : start + NEXT_LOCK_CHUNK]
        with transaction.atomic():
            locked = {
                row.pk: row
                for row in Identification.objects.select_for_update(skip_locked=True).filter(
                    pk__in=chunk, state=Identification.State.QUEUED
                )
            }
            for pk in chunk:
                if pk in locked and not _identification_give_up_if_worn(identification=locked[pk]):
                    claimed = identification_claim(identification=locked[pk])
                    if claimed is not None:
                        return claimed
    return None


def _annotation_load(*, annotation_id: int) -> Annotation:
    return Annotation.objects.select_related("species", "image__encounter").get(pk=annotation_id)


def _identification_give_up_if_worn(*, identification: Identification) -> bool:
    """Fail a waiting search started ``JOBS_MAX_ATTEMPTS`` times; whether it was failed.

    Only a search no worker is running gives up: a running one is another worker's to end.
    """
    if not (
        identification.state == Identification.State.QUEUED
        and identification.attempts >= settings.JOBS_MAX_ATTEMPTS
    ):
        return False
    identifications_fail(
        annotation_ids=[identification.annotation_id],
        reason=f"Gave up after {identification.attempts} tries. {identification.error}",
    )
    return True


def _identification_search(
    *, identification: Identification, annotation: Annotation
) -> Identification:
    """Run a search this worker claimed: rank the candidates, then store them."""
    setting = species_model_setting(species=annotation.species)
    version = setting.model_version
    embedding = Embedding.objects.filter(annotation=annotation, model_version=version).first()
    if embedding is None:  # its box was corrected meanwhile: it waits for the new vector
        Identification.objects.filter(
            pk=identification.pk, state=Identification.State.RUNNING, worker=worker_name()
        ).update(state=Identification.State.QUEUED, sent_at=None, worker="")
        raise NotEmbeddedYet(f"annotation {annotation.pk} has no {version.name} vector yet")
    try:
        scored = candidates_score(
            species_id=annotation.species_id,
            setting=setting,
            vector=np.asarray(embedding.vector, dtype=np.float32),
            query_keypoints=lambda: gallery_keypoints(
                annotation_id=annotation.pk, method=setting.local_method
            ),
            exclude_annotation_ids={annotation.pk},
            scope=viewpoint_scope(annotation=annotation),
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
    return _candidates_store(
        identification=identification, annotation=annotation, setting=setting, scored=scored
    )


def _candidates_store(
    *,
    identification: Identification,
    annotation: Annotation,
    setting: SpeciesModel,
    scored: list[Candidate],
) -> Identification:
    """Replace the search's candidates with ``scored``; the search ends ``ready``."""
    version = setting.model_version
    with transaction.atomic():
        identification = Identification.objects.select_for_update().get(pk=identification.pk)
        identification.candidates.all().delete()
        MatchCandidate.objects.bulk_create(
            match_candidates_build(identification=identification, scored=scored)
        )
        identification.model_version = version
        identification.probably_new = (
            not scored or scored[0].probability < setting.probably_new_threshold
        )
        identification.error = ""
        identification.worker = ""
        if identification.state != Identification.State.DECIDED:
            identification.state = Identification.State.READY
        identification.save()
        encounter_status_refresh(encounter_id=annotation.image.encounter_id)
    return identification


def match_candidates_build(
    *, identification: Identification, scored: list[Candidate]
) -> list[MatchCandidate]:
    """The stored rows of a ranked shortlist, in its order (not yet saved)."""
    return [
        MatchCandidate(
            identification=identification,
            rank=position,
            individual_id=c.individual_id,
            gallery_annotation_id=c.annotation_id,
            embedding_score=c.cosine,
            inlier_count=c.inliers,
            score=c.score,
            fused_score=c.probability,
            match_pairs=c.pairs or [],
        )
        for position, c in enumerate(scored, start=1)
    ]


def identification_claim(*, identification: Identification) -> Identification | None:
    """Mark a search as running in this process, if its row is still as this worker read it.

    The update is conditional on the state and the attempts read, so of two workers that read
    the same row, one claims it and the other's update touches no row. A running search is
    another worker's (the sweep frees it if that worker died); a decided one has nothing left
    to search.

    Returns:
        The claimed search, or ``None`` when it is not this worker's to run (nothing changed).
    """
    if identification.state in (Identification.State.RUNNING, Identification.State.DECIDED):
        return None
    claimed = Identification.objects.filter(
        pk=identification.pk, state=identification.state, attempts=identification.attempts
    ).update(
        state=Identification.State.RUNNING,
        worker=worker_name(),
        started_at=timezone.now(),
        attempts=F("attempts") + 1,
    )
    if claimed != 1:
        return None
    return Identification.objects.get(pk=identification.pk)


def identifications_dispatch(*, identification_ids: list[int]) -> int:
    """Send searches to their queues; what the broker took is marked sent (see the sweep).

    One message per search: on a fair queue a nudge (:func:`identification_next_run`), so
    there are as many nudges as searches waiting there; elsewhere the search itself.

    Returns:
        How many were handed to the broker.
    """
    from identification.tasks import annotation_identify_task, identification_next_task

    sent = 0
    for pk, annotation_id, queue in (
        Identification.objects.filter(pk__in=identification_ids)
        .order_by("created_at", "pk")
        .values_list("pk", "annotation_id", "queue")
    ):
        # On a fair queue a message names no search: the worker takes whichever's turn it is.
        sent_ok = (
            task_send(identification_next_task, queue, queue=queue)
            if queue_is_fair(queue)
            else task_send(annotation_identify_task, annotation_id, queue=queue)
        )
        if not sent_ok:
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
    exclude_annotation_ids: Collection[int] = (),
    scope: SearchScope | None = None,
) -> list[Candidate]:
    """The species' ranking of one query: :func:`candidates_shortlist`, then
    ``reid.ranking.rank`` by ``method`` (default the species' own) with the calibration
    fitted under the ranking version (the hand-set one otherwise)."""
    method = method or setting.ranking_method
    candidates = candidates_shortlist(
        species_id=species_id,
        setting=setting,
        vector=vector,
        query_keypoints=query_keypoints if method in NEEDS_LOCAL else None,
        exclude_annotation_ids=exclude_annotation_ids,
        scope=scope,
    )
    return rank(candidates, method, species_calibrator(setting=setting))


def candidates_shortlist(
    *,
    species_id: int,
    setting: SpeciesModel,
    vector: np.ndarray,
    query_keypoints: Callable[[], Keypoints] | None,
    exclude_annotation_ids: Collection[int] = (),
    scope: SearchScope | None = None,
    match_cache: dict[int, Match] | None = None,
) -> list[Candidate]:
    """Embedding neighbours from the species' index → the shortlist of ``reid.ranking``,
    with keypoint evidence when ``query_keypoints`` is given.

    Args:
        species_id: Only this species' individuals are candidates.
        setting: The species' model setting (version, local method).
        vector: The query's embedding under ``setting.model_version``.
        query_keypoints: Returns the query's keypoints; ``None``: embedding only.
        exclude_annotation_ids: Never candidates: the query itself and, when evaluating, its
            encounter's photos (or its whole individual).
        scope: Limits on the gallery (e.g. the query's viewpoint).
        match_cache: This query's matches by gallery annotation id, reused across calls (an
            evaluation ranks each query twice).
    """
    from reid.local_features import match

    version = setting.model_version
    excluded = set(exclude_annotation_ids)
    neighbours = nearest_identified_annotations(
        species_id=species_id,
        version_id=version.pk,
        dim=version.embedding_dim,
        vector=vector,
        k=NEIGHBOURS,
        exclude_annotation_ids=excluded,
        scope=scope,
    )
    local = None
    gallery = [Neighbour(n.annotation_id, n.individual_id, n.cosine) for n in neighbours]
    per_candidate = photos_per_candidate(setting.local_method)
    if query_keypoints is not None:
        query: list[Keypoints] = []  # extracted on the first match only
        cache = {} if match_cache is None else match_cache
        wanted = [
            g
            for g in photos_to_match(gallery, photos_per_candidate=per_candidate)
            if g not in cache
        ]
        stored = gallery_keypoints_many(annotation_ids=wanted, method=setting.local_method)

        def local(gallery_id: int) -> Match:
            if gallery_id not in cache:
                if not query:
                    query.append(query_keypoints())
                cache[gallery_id] = match(query[0], stored[gallery_id])
            return cache[gallery_id]

    return shortlist(gallery, local, photos_per_candidate=per_candidate)


def species_calibrator(*, setting: SpeciesModel) -> FusionCalibrator | None:
    """The calibration fitted under the version that ranks now, or ``None`` (hand-set)."""
    from reid.fusion import FusionCalibrator

    return FusionCalibrator.from_dict(setting.calibration) if setting.is_calibrated else None


def gallery_keypoints(*, annotation_id: int, method: str) -> Keypoints:
    """Cached keypoints of an annotation, extracted on first use."""
    return gallery_keypoints_many(annotation_ids=[annotation_id], method=method)[annotation_id]


def gallery_keypoints_many(*, annotation_ids: Collection[int], method: str) -> dict[int, Keypoints]:
    """Cached keypoints of annotations by id, read in one query (a search matches ~20
    photos), those never extracted extracted and stored now."""
    from reid.local_features import Keypoints

    rows = LocalFeatures.objects.filter(annotation_id__in=annotation_ids, method=method)
    blobs = {row.annotation_id: bytes(row.data) for row in rows.only("annotation_id", "data")}
    missing = Annotation.objects.select_related("image").filter(
        pk__in=set(annotation_ids) - set(blobs)
    )
    for annotation in missing:
        blobs[annotation.pk] = bytes(
            local_features_ensure(annotation=annotation, method=method).data
        )
    return {pk: Keypoints.from_bytes(blob) for pk, blob in blobs.items()}


def species_identifications_refresh(*, species_id: int) -> int:
    """Re-rank every undecided animal of a species (after its model changed), on ``bulk``."""
    identifications = Identification.objects.filter(annotation__species_id=species_id).exclude(
        state=Identification.State.DECIDED
    )
    identification_ids = list(identifications.values_list("pk", flat=True))
    identifications.update(queue="bulk", sent_at=None)
    transaction.on_commit(lambda: identifications_dispatch(identification_ids=identification_ids))
    return len(identification_ids)
