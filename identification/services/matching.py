"""Ranking the known individuals an annotated animal could be."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
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
from wildweb.errors import ServiceError

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


def annotation_identify(*, annotation_id: int) -> Identification:
    """Rank candidates for one annotation and store them (replacing earlier ones).

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
            query_keypoints=lambda: gallery_keypoints(annotation_id=annotation.pk),
            exclude_annotation_id=annotation.pk,
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
    exclude_annotation_id: int | None = None,
    shortlist: int = SHORTLIST,
    scope: SearchScope | None = None,
) -> list[Scored]:
    """Embedding neighbours → best per individual → keypoint re-scoring → fused ranking.

    Args:
        species_id: Only this species' individuals are candidates.
        setting: The species' model setting (version, calibration, default method).
        vector: The query's embedding under ``setting.model_version``.
        query_keypoints: Returns the query's keypoints; called only if keypoints are needed.
        method: ``embedding``, ``local`` or ``fused``; default the species' own.
        exclude_annotation_id: The query's own annotation, never its own candidate.
        scope: Limits on the gallery (e.g. the query's viewpoint).
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
        scope=scope,
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
