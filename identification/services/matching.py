"""Ranking the known individuals an annotated animal could be."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

import numpy as np
from django.db import DatabaseError, transaction

from catalogue.models import Annotation, Encounter
from identification.models import (
    Embedding,
    Identification,
    LocalFeatures,
    MatchCandidate,
    SpeciesModel,
)
from identification.selectors import SearchScope, nearest_identified_annotations, viewpoint_scope
from identification.services.embedding import local_features_ensure
from identification.services.models import species_model_setting
from notifications.services import notify_candidates_ready
from reid.ranking import (
    NEEDS_LOCAL,
    NEIGHBOURS,
    Candidate,
    Neighbour,
    photos_per_candidate,
    rank,
    shortlist,
)
from wildweb.errors import ServiceError

if TYPE_CHECKING:
    from reid.fusion import FusionCalibrator
    from reid.local_features import Keypoints, Match


class NotEmbeddedYet(Exception):
    """The annotation has no vector under the species' model yet; retry later."""


def annotation_identify(*, annotation_id: int) -> Identification:
    """Rank candidates for one annotation and store them (replacing earlier ones).

    Each stored candidate keeps its calibrated probability of being the same individual
    (``fused_score``), whatever the ranking method, so callers can combine photos.

    Raises:
        NotEmbeddedYet: No vector yet under the species' active model.
    """
    annotation = Annotation.objects.select_related("species", "image__encounter").get(
        pk=annotation_id
    )
    identification, _ = Identification.objects.get_or_create(annotation=annotation)
    setting = species_model_setting(species=annotation.species)
    version = setting.model_version
    embedding = Embedding.objects.filter(annotation=annotation, model_version=version).first()
    if embedding is None:
        raise NotEmbeddedYet(f"annotation {annotation_id} has no {version.name} vector yet")
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
    except DatabaseError as error:
        # A timeout is an error the user sees, never an empty candidate list.
        Identification.objects.filter(pk=identification.pk).update(
            state=Identification.State.FAILED, error=f"Search failed: {error}".strip()[:500]
        )
        raise ServiceError("The search for candidates failed; it will be retried.") from error
    with transaction.atomic():
        identification = Identification.objects.select_for_update().get(pk=identification.pk)
        identification.candidates.all().delete()
        MatchCandidate.objects.bulk_create(
            [
                MatchCandidate(
                    identification=identification,
                    rank=position,
                    individual_id=c.individual_id,
                    gallery_annotation_id=c.annotation_id,
                    embedding_score=c.cosine,
                    inlier_count=c.inliers,
                    fused_score=c.probability,
                    match_pairs=c.pairs or [],
                )
                for position, c in enumerate(scored, start=1)
            ]
        )
        identification.model_version = version
        identification.probably_new = (
            not scored or scored[0].probability < setting.probably_new_threshold
        )
        identification.error = ""
        if identification.state != Identification.State.DECIDED:
            identification.state = Identification.State.READY
        identification.save()
        if Encounter.objects.filter(
            pk=annotation.image.encounter_id, status=Encounter.Status.PROCESSING
        ).update(status=Encounter.Status.AWAITING_REVIEW):
            notify_candidates_ready(encounter_id=annotation.image.encounter_id)
    return identification


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
    if query_keypoints is not None:
        query: list[Keypoints] = []  # extracted on the first match only
        cache = {} if match_cache is None else match_cache

        def local(gallery_id: int) -> Match:
            if gallery_id not in cache:
                if not query:
                    query.append(query_keypoints())
                cache[gallery_id] = match(
                    query[0],
                    gallery_keypoints(annotation_id=gallery_id, method=setting.local_method),
                )
            return cache[gallery_id]

    return shortlist(
        [Neighbour(n.annotation_id, n.individual_id, n.cosine) for n in neighbours],
        local,
        photos_per_candidate=photos_per_candidate(setting.local_method),
    )


def species_calibrator(*, setting: SpeciesModel) -> FusionCalibrator | None:
    """The calibration fitted under the version that ranks now, or ``None`` (hand-set)."""
    from reid.fusion import FusionCalibrator

    return FusionCalibrator.from_dict(setting.calibration) if setting.is_calibrated else None


def gallery_keypoints(*, annotation_id: int, method: str) -> Keypoints:
    """Cached keypoints of an annotation, extracted on first use."""
    from reid.local_features import Keypoints

    cached = LocalFeatures.objects.filter(annotation_id=annotation_id, method=method).first()
    if cached is None:
        cached = local_features_ensure(
            annotation=Annotation.objects.select_related("image").get(pk=annotation_id),
            method=method,
        )
    return Keypoints.from_bytes(bytes(cached.data))


def species_identifications_refresh(*, species_id: int) -> int:
    """Re-rank every undecided animal of a species (after its model changed)."""
    from django.db import transaction

    annotation_ids = list(
        Identification.objects.filter(annotation__species_id=species_id)
        .exclude(state=Identification.State.DECIDED)
        .values_list("annotation_id", flat=True)
    )

    def dispatch() -> None:
        from identification.tasks import annotation_identify_task

        for annotation_id in annotation_ids:
            annotation_identify_task.delay(annotation_id)

    transaction.on_commit(dispatch)
    return len(annotation_ids)
