"""Ranking the known individuals an annotated animal could be."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from django.db import DatabaseError, transaction

from catalogue.models import Annotation, Encounter
from identification.models import Embedding, Identification, LocalFeatures, MatchCandidate, SpeciesModel
from identification.selectors import nearest_identified_annotations
from identification.services.embedding import local_features_ensure
from identification.services.models import species_model_setting
from wildweb.errors import ServiceError

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
    annotation = Annotation.objects.select_related("species", "image__encounter").get(pk=annotation_id)
    identification, _ = Identification.objects.get_or_create(annotation=annotation)
    setting = species_model_setting(species=annotation.species)
    version = setting.model_version
    embedding = Embedding.objects.filter(annotation=annotation, model_version=version).first()
    if embedding is None:
        raise NotEmbeddedYet(f"annotation {annotation_id} has no {version.name} vector yet")
    try:
        scored = candidates_score(annotation=annotation, setting=setting,
                                  vector=np.asarray(embedding.vector, dtype=np.float32))
    except DatabaseError as error:
        # A timeout is an error the user sees, never an empty candidate list.
        Identification.objects.filter(pk=identification.pk).update(
            state=Identification.State.FAILED, error=f"Search failed: {error}".strip()[:500])
        raise ServiceError("The search for candidates failed; it will be retried.") from error
    with transaction.atomic():
        identification = Identification.objects.select_for_update().get(pk=identification.pk)
        identification.candidates.all().delete()
        MatchCandidate.objects.bulk_create([
            MatchCandidate(identification=identification, rank=rank, individual_id=s.individual_id,
                           gallery_annotation_id=s.annotation_id, embedding_score=s.cosine,
                           inlier_count=s.inliers, fused_score=s.fused, match_pairs=s.pairs or [])
            for rank, s in enumerate(scored, start=1)
        ])
        identification.model_version = version
        identification.probably_new = not scored or scored[0].fused < setting.new_individual_threshold
        identification.error = ""
        if identification.state != Identification.State.DECIDED:
            identification.state = Identification.State.READY
        identification.save()
        Encounter.objects.filter(pk=annotation.image.encounter_id,
                                 status=Encounter.Status.PROCESSING).update(
            status=Encounter.Status.AWAITING_REVIEW)
    return identification


def candidates_score(*, annotation: Annotation, setting: SpeciesModel, vector: np.ndarray,
                     shortlist: int = SHORTLIST) -> list[Scored]:
    """Embedding neighbours → best per individual → keypoint re-scoring → fused ranking."""
    from reid.fusion import FusionCalibrator
    from reid.local_features import Keypoints, match

    version = setting.model_version
    neighbours = nearest_identified_annotations(
        species_id=annotation.species_id, version_id=version.pk, dim=version.embedding_dim,
        vector=vector, k=NEIGHBOURS, exclude_annotation_id=annotation.pk)
    per_individual: dict[int, list] = defaultdict(list)
    for neighbour in neighbours:
        per_individual[neighbour.individual_id].append(neighbour)
    ranked = sorted(per_individual.values(), key=lambda hits: -hits[0].cosine)[:shortlist]

    method = setting.ranking_method
    use_keypoints = method != SpeciesModel.RankingMethod.EMBEDDING
    query_keypoints = None
    if use_keypoints:
        query_keypoints = Keypoints.from_bytes(bytes(local_features_ensure(annotation=annotation).data))
    calibrator = (FusionCalibrator.from_dict(setting.calibration) if setting.calibration
                  else FusionCalibrator.default())
    scored: list[Scored] = []
    for hits in ranked:
        best = Scored(individual_id=hits[0].individual_id, annotation_id=hits[0].annotation_id,
                      cosine=hits[0].cosine)
        if query_keypoints is not None:
            for hit in hits[:PHOTOS_PER_CANDIDATE]:
                gallery = Keypoints.from_bytes(bytes(_gallery_features(hit.annotation_id).data))
                result = match(query_keypoints, gallery)
                if best.inliers is None or result.inliers > best.inliers:
                    best.inliers, best.annotation_id = result.inliers, hit.annotation_id
                    best.cosine = hit.cosine
                    best.pairs = np.round(result.pairs, 1).tolist()
        best.fused = float(calibrator.predict(np.array([best.cosine]),
                                              np.array([best.inliers or 0]))[0])
        scored.append(best)
    key = {
        SpeciesModel.RankingMethod.EMBEDDING: lambda s: -s.cosine,
        SpeciesModel.RankingMethod.LOCAL: lambda s: (-(s.inliers or 0), -s.cosine),
        SpeciesModel.RankingMethod.FUSED: lambda s: -s.fused,
    }[method]
    return sorted(scored, key=key)


def _gallery_features(annotation_id: int) -> LocalFeatures:
    cached = LocalFeatures.objects.filter(annotation_id=annotation_id).first()
    if cached is not None:
        return cached
    return local_features_ensure(annotation=Annotation.objects.select_related("image").get(pk=annotation_id))
