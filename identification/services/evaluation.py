"""Identifying a loose photo, and leave-one-out evaluation of a species' ranking."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import numpy as np
from PIL import Image as PILImage

from catalogue.models import Annotation, Individual, Species
from identification.models import Embedding, SpeciesModel
from identification.services.matching import Scored, candidates_score, gallery_keypoints
from identification.services.models import model_version_embedder, species_model_setting


def image_identify(
    *, image: PILImage.Image, species: Species, method: str | None = None, top: int = 10
) -> list[dict]:
    """Rank the species' known individuals for a photo that is not in the catalogue."""
    from reid.local_features import extract

    setting = species_model_setting(species=species)
    image = image.convert("RGB")
    vector = model_version_embedder(version=setting.model_version).embed_images([image])[0]
    scored = candidates_score(
        species_id=species.pk,
        setting=setting,
        vector=vector,
        query_keypoints=lambda: extract(image, method="sift"),
        method=method,
    )
    return _described(scored[:top])


def species_evaluate(*, species: Species, method: str, limit: int | None = None) -> dict:
    """Leave-one-out over the species' identified annotations, ranking individuals as the app does.

    Every identified annotation whose individual has at least one other identified annotation
    queries the rest (its own annotation excluded). Top-k counts the queries whose individual is
    among the first k ranked; mAP is the mean of 1/rank (0 when outside the shortlist).
    """
    setting = species_model_setting(species=species)
    version = setting.model_version
    hits = {1: 0, 5: 0, 10: 0}
    average_precision = []
    for truth, scored in _leave_one_out_rankings(setting=setting, method=method, limit=limit):
        ranked = [s.individual_id for s in scored]
        rank = ranked.index(truth) + 1 if truth in ranked else None
        for k in hits:
            hits[k] += rank is not None and rank <= k
        average_precision.append(1.0 / rank if rank else 0.0)
    n = len(average_precision)
    return {
        "species": species.name,
        "method": method,
        "model_version": version.name,
        "n_queries": n,
        "top1": hits[1] / n if n else None,
        "top5": hits[5] / n if n else None,
        "top10": hits[10] / n if n else None,
        "mAP": float(np.mean(average_precision)) if n else None,
    }


def _leave_one_out_rankings(
    *, setting: SpeciesModel, method: str, limit: int | None
) -> Iterator[tuple[int, list[Scored]]]:
    """Rank, as the app does, each identified annotation that has a sibling photo against
    the rest of the species (itself excluded); yield its true individual and the ranking."""
    species, version = setting.species, setting.model_version
    embeddings = dict(
        Embedding.objects.filter(
            species=species, model_version=version, annotation__individual__isnull=False
        ).values_list("annotation_id", "vector")
    )
    individual_of = dict(
        Annotation.objects.filter(pk__in=embeddings).values_list("pk", "individual_id")
    )
    sizes = Counter(individual_of.values())
    for annotation_id in sorted(a for a, i in individual_of.items() if sizes[i] >= 2)[:limit]:
        scored = candidates_score(
            species_id=species.pk,
            setting=setting,
            vector=np.asarray(embeddings[annotation_id], dtype=np.float32),
            query_keypoints=lambda a=annotation_id: gallery_keypoints(annotation_id=a),
            method=method,
            exclude_annotation_id=annotation_id,
        )
        yield individual_of[annotation_id], scored


def _described(scored: list[Scored]) -> list[dict]:
    individuals = Individual.objects.in_bulk([s.individual_id for s in scored])
    return [
        {
            "rank": rank,
            "individual_id": s.individual_id,
            "code": individuals[s.individual_id].code,
            "name": individuals[s.individual_id].name,
            "fused_score": round(s.fused, 4),
            "embedding_score": round(s.cosine, 4),
            "inlier_count": s.inliers,
        }
        for rank, s in enumerate(scored, start=1)
    ]


RANKING_METHODS = SpeciesModel.RankingMethod.values


def species_calibrate(*, species: Species, queries: int = 200) -> dict:
    """Fit the species' fusion calibration on labelled pairs from its identified animals.

    Each identified annotation (with a sibling photo) is ranked as the app ranks it; every
    shortlisted candidate gives a pair (cosine, keypoint inliers, same individual or not).
    The fitted logistic model turns fused scores into probabilities comparable across species.

    Raises:
        ServiceError: Too few identified photos to have both same and different pairs.
    """
    from reid.fusion import FusionCalibrator
    from wildweb.errors import ServiceError

    setting = species_model_setting(species=species)
    version = setting.model_version
    cosines, inliers, same = [], [], []
    rankings = _leave_one_out_rankings(
        setting=setting, method=SpeciesModel.RankingMethod.LOCAL, limit=queries)
    for truth, scored in rankings:
        for candidate in scored:
            cosines.append(candidate.cosine)
            inliers.append(candidate.inliers or 0)
            same.append(candidate.individual_id == truth)
    if not any(same) or all(same):
        raise ServiceError(
            f"{species}: too few identified photos to calibrate (need several "
            "individuals with at least two photos each)."
        )
    calibrator = FusionCalibrator.default().fit(
        np.array(cosines), np.array(inliers), np.array(same)
    )
    setting.calibration = calibrator.to_dict()
    setting.save(update_fields=["calibration"])
    return {
        "species": species.name,
        "model_version": version.name,
        "pairs": len(same),
        "same_pairs": int(sum(same)),
        "calibration": setting.calibration,
    }
