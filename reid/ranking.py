"""The shortlist ranking: embedding neighbours → best photos per individual → local evidence →
one ordering per method.

The app's matching ranks each photo with these two functions and stores its candidates, each
with its probability as ``fused_score``; every evaluation (``evaluate``, ``calibrate``, the
training report, ``reid eval``, the benchmarks) ranks its queries with the same two. The
review page does not show that order: it orders an animal's candidates by the stored scores
of its best photo (``fused_score`` unless the species ranks by embedding or local features;
``identification.selectors.review``), which can differ from what is measured here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from reid.fusion import FusionCalibrator
from reid.local_features import Match

NEIGHBOURS = 50  # gallery photos fetched by embedding similarity
SHORTLIST = 10  # individuals re-scored with keypoints
PHOTOS_PER_CANDIDATE = 2  # each shortlisted individual's best photos matched with keypoints
# XFeat's LighterGlue costs ~30x a SIFT match on a CPU, so it matches one photo per candidate,
# keeping upload → candidates under a second (BENCHMARKS.md).
PHOTOS_PER_CANDIDATE_BY_METHOD = {"xfeat": 1}
# The hand-set fusion: COSINE_WEIGHT * cosine + log1p(inliers). Both signals stay in absolute
# units, so each counts as much as it is decisive in this shortlist: a verified match with
# e times more inliers than the rest outweighs a 0.2 cosine gap. Z-scoring them over the
# shortlist instead (issue 9's z(cosine) + 2 z(log-inliers)) makes noise look as decisive as
# a clear match; it lost 0.10 top-1 to SIFT alone on cows and 0.08 to the embedding on dogs,
# where this held on all shared species (BENCHMARKS.md).
COSINE_WEIGHT = 5.0

EMBEDDING, LOCAL, FUSED, CALIBRATED = "embedding", "local", "fused", "calibrated"
METHODS = (EMBEDDING, LOCAL, FUSED, CALIBRATED)
NEEDS_LOCAL = (LOCAL, FUSED, CALIBRATED)


@dataclass(frozen=True)
class Neighbour:
    """A gallery photo near the query: an annotation id (or a record's index)."""

    annotation_id: Hashable
    individual_id: Hashable
    cosine: float


@dataclass
class Candidate:
    """One individual the query could be, with the evidence of its best photo.

    Attributes:
        individual_id: the individual.
        annotation_id: its photo that matched best (with keypoints; else the most similar).
        cosine: the best embedding cosine of its photos, so that the embedding ranking does
            not depend on whether keypoints were matched.
        inliers: verified local correspondences (``None`` when keypoints were not matched).
        pairs: the inlier correspondences ``[x1, y1, x2, y2]`` for drawing.
        probability: calibrated P(same individual).
        score: what the ranking method sorted by.
    """

    individual_id: Hashable
    annotation_id: Hashable
    cosine: float
    inliers: int | None = None
    pairs: list | None = None
    probability: float = 0.0
    score: float = 0.0


def photos_per_candidate(local_method: str) -> int:
    """How many of each shortlisted individual's photos are matched with ``local_method``."""
    return PHOTOS_PER_CANDIDATE_BY_METHOD.get(local_method, PHOTOS_PER_CANDIDATE)


def shortlist(
    neighbours: Sequence[Neighbour],
    local_match: Callable[[Hashable], Match] | None = None,
    size: int = SHORTLIST,
    photos_per_candidate: int = PHOTOS_PER_CANDIDATE,
) -> list[Candidate]:
    """The ``size`` individuals with the most similar photos, with local evidence.

    Args:
        neighbours: gallery photos with their cosine to the query (any order).
        local_match: matches the query against a gallery photo; ``None``: embedding only.
        size: individuals kept.
        photos_per_candidate: each individual's most similar photos that are matched; the
            one with most inliers is its evidence.

    Returns:
        Candidates in embedding order (unranked by any fusion).
    """
    per_individual: dict[Hashable, list[Neighbour]] = {}
    for neighbour in sorted(neighbours, key=lambda n: -n.cosine):
        per_individual.setdefault(neighbour.individual_id, []).append(neighbour)
    candidates = []
    for hits in list(per_individual.values())[:size]:
        best = Candidate(hits[0].individual_id, hits[0].annotation_id, hits[0].cosine)
        if local_match is not None:
            for hit in hits[:photos_per_candidate]:
                result = local_match(hit.annotation_id)
                if best.inliers is None or result.inliers > best.inliers:
                    best.inliers, best.annotation_id = result.inliers, hit.annotation_id
                    best.pairs = np.round(result.pairs, 1).tolist()
        candidates.append(best)
    return candidates


def rank(
    candidates: Sequence[Candidate],
    method: str,
    calibrator: FusionCalibrator | None = None,
    cosine_weight: float = COSINE_WEIGHT,
) -> list[Candidate]:
    """Order a shortlist by one method; every candidate gets its probability and score.

    Args:
        candidates: from :func:`shortlist` (with inliers for the local methods).
        method: ``embedding`` (cosine), ``local`` (inliers, then cosine), ``fused`` (the
            hand-set ``COSINE_WEIGHT * cosine + log1p(inliers)``) or ``calibrated`` (the
            fitted probability; the hand-set fusion while none is fitted).
        calibrator: the species' fitted calibration, or ``None`` for the hand-set one. It
            gives every candidate its probability, whatever the method.
        cosine_weight: weight of the cosine in the hand-set fusion.

    Returns:
        New candidates, best first (ties keep the embedding order).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == CALIBRATED and (calibrator is None or not calibrator.is_fitted):
        method = FUSED
    calibrator = calibrator or FusionCalibrator.default()
    ranked = [dataclasses.replace(c) for c in candidates]
    if not ranked:
        return ranked
    cosine = np.array([c.cosine for c in ranked], dtype=np.float64)
    has_local = all(c.inliers is not None for c in ranked)
    if method != EMBEDDING and not has_local:
        raise ValueError(f"ranking by {method} needs the candidates' inliers")
    inliers = np.array([c.inliers for c in ranked], dtype=np.float64) if has_local else None
    probability = calibrator.predict(cosine, inliers)
    if method == EMBEDDING:
        score = cosine
    elif method == LOCAL:
        score = inliers + 1e-3 * cosine  # inlier ties go to the more similar embedding
    elif method == FUSED:
        score = cosine_weight * cosine + np.log1p(inliers)
    else:
        score = probability
    for candidate, p, s in zip(ranked, probability, score, strict=True):
        candidate.probability, candidate.score = float(p), float(s)
    order = np.argsort(-score, kind="stable")
    return [ranked[i] for i in order]
