"""The shortlist ranking: embedding neighbours → best photos per individual → local evidence →
one ordering per method → one ordering per sighting.

The app ranks every animal with these functions, and every evaluation (``evaluate``,
``calibrate``, the training report, ``reid eval``, the benchmarks) ranks its queries with the
same ones, so what is measured is what the expert sees: :func:`method_score` is the one score
each method orders by (stored with every candidate the app finds), :func:`rank` orders a
photo's shortlist by it, and :func:`sighting_combine` orders a sighting's photos together.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

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


def _best_photos(
    neighbours: Sequence[Neighbour], size: int, photos_per_candidate: int
) -> list[list[Neighbour]]:
    """The ``size`` individuals with the most similar photos, each with its
    ``photos_per_candidate`` most similar photos, most similar first."""
    per_individual: dict[Hashable, list[Neighbour]] = {}
    for neighbour in sorted(neighbours, key=lambda n: -n.cosine):
        per_individual.setdefault(neighbour.individual_id, []).append(neighbour)
    return [hits[:photos_per_candidate] for hits in list(per_individual.values())[:size]]


def photos_to_match(
    neighbours: Sequence[Neighbour],
    size: int = SHORTLIST,
    photos_per_candidate: int = PHOTOS_PER_CANDIDATE,
) -> list[Hashable]:
    """The gallery photos :func:`shortlist` matches with keypoints, in its order, so that a
    caller can fetch all their keypoints at once."""
    return [
        hit.annotation_id
        for hits in _best_photos(neighbours, size, photos_per_candidate)
        for hit in hits
    ]


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
    candidates = []
    for hits in _best_photos(neighbours, size, photos_per_candidate):
        best = Candidate(hits[0].individual_id, hits[0].annotation_id, hits[0].cosine)
        if local_match is not None:
            for hit in hits:
                result = local_match(hit.annotation_id)
                if best.inliers is None or result.inliers > best.inliers:
                    best.inliers, best.annotation_id = result.inliers, hit.annotation_id
                    best.pairs = np.round(result.pairs, 1).tolist()
        candidates.append(best)
    return candidates


def method_score(
    method: str,
    cosine: float | Sequence[float] | np.ndarray,
    inliers: float | Sequence[float] | np.ndarray | None = None,
    calibrator: FusionCalibrator | None = None,
    cosine_weight: float = COSINE_WEIGHT,
) -> float | np.ndarray:
    """What a ranking method orders candidates by, higher first.

    Args:
        method: ``embedding`` (the cosine), ``local`` (inliers; ties go to the higher
            cosine), ``fused`` (the hand-set ``cosine_weight * cosine + log1p(inliers)``) or
            ``calibrated`` (the fitted probability; the hand-set fusion while none is fitted).
        cosine: embedding cosine per candidate (or one).
        inliers: verified inlier count per candidate; needed by every method but embedding.
        calibrator: the species' calibration (only ``calibrated`` reads it).
        cosine_weight: weight of the cosine in the hand-set fusion.

    Returns:
        One score per candidate, float64 (a float for a scalar ``cosine``).

    Raises:
        ValueError: an unknown method, or a local method without inliers.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    cosines = np.asarray(cosine, dtype=np.float64).reshape(-1)
    if method == EMBEDDING:
        score = cosines
    elif inliers is None:
        raise ValueError(f"ranking by {method} needs the candidates' inliers")
    else:
        counts = np.asarray(inliers, dtype=np.float64).reshape(-1)
        if method == LOCAL:
            score = counts + 1e-3 * cosines  # inlier ties go to the more similar embedding
        elif method == CALIBRATED and calibrator is not None and calibrator.is_fitted:
            score = calibrator.predict(cosines, counts)
        else:
            score = cosine_weight * cosines + np.log1p(counts)
    return float(score[0]) if np.ndim(cosine) == 0 else score


def rank(
    candidates: Sequence[Candidate],
    method: str,
    calibrator: FusionCalibrator | None = None,
    cosine_weight: float = COSINE_WEIGHT,
) -> list[Candidate]:
    """Order a shortlist by one method; every candidate gets its probability and score.

    Args:
        candidates: from :func:`shortlist` (with inliers for the local methods).
        method: one of :data:`METHODS`, scored by :func:`method_score`.
        calibrator: the species' fitted calibration, or ``None`` for the hand-set one. It
            gives every candidate its probability, whatever the method.
        cosine_weight: weight of the cosine in the hand-set fusion.

    Returns:
        New candidates, best first (ties keep the embedding order).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    ranked = [dataclasses.replace(c) for c in candidates]
    if not ranked:
        return ranked
    cosine = np.array([c.cosine for c in ranked], dtype=np.float64)
    has_local = all(c.inliers is not None for c in ranked)
    inliers = np.array([c.inliers for c in ranked], dtype=np.float64) if has_local else None
    score = method_score(method, cosine, inliers, calibrator, cosine_weight)
    probability = (calibrator or FusionCalibrator.default()).predict(cosine, inliers)
    for candidate, p, s in zip(ranked, probability, score, strict=True):
        candidate.probability, candidate.score = float(p), float(s)
    order = np.argsort(-score, kind="stable")
    return [ranked[i] for i in order]


class Scored(Protocol):
    """A photo's candidate as :func:`sighting_combine` reads it: a reid :class:`Candidate` or
    a candidate row the app stored."""

    individual_id: Hashable
    score: float


ScoredT = TypeVar("ScoredT", bound=Scored)


@dataclass
class SightingCandidate(Generic[ScoredT]):
    """One individual a sighting's animal could be.

    Attributes:
        best: the photo candidate with the highest score for this individual.
        photo_count: how many of the sighting's photos have the individual among candidates.
    """

    best: ScoredT
    photo_count: int

    @property
    def individual_id(self) -> Hashable:
        return self.best.individual_id

    @property
    def score(self) -> float:
        return self.best.score


def sighting_combine(rankings: Sequence[Sequence[ScoredT]]) -> list[SightingCandidate[ScoredT]]:
    """One ranking for an animal from the rankings of each of its photos.

    An individual's evidence is its best photo's score (the maximum), not a sum over photos.
    Photos of one sighting share light, pose and background, so their evidence is far from
    independent: summing would count one look several times over, and would need an invented
    score wherever an individual is missing from one photo's shortlist. With the maximum, the
    photo that shows the animal best (often the only flank shot) decides, and a weak extra
    photo can never push the right individual down. Ties on the score go to the individual
    more photos agree on, then to the better position in its photo, then to the earlier
    photo. A sighting of one photo therefore ranks exactly as :func:`rank` ranked that photo.

    Args:
        rankings: each photo's candidates, best first, each scored by the same method
            (:func:`method_score`).

    Returns:
        The sighting's candidates, best first.
    """
    best: dict[Hashable, tuple[float, int, int, ScoredT]] = {}
    photos: dict[Hashable, set[int]] = {}
    for photo, ranked in enumerate(rankings):
        for position, candidate in enumerate(ranked):
            individual = candidate.individual_id
            photos.setdefault(individual, set()).add(photo)
            held = best.get(individual)
            # Of equal scores, the better position is the individual's evidence.
            if held is None or (candidate.score, -position) > (held[0], -held[1]):
                best[individual] = (candidate.score, position, photo, candidate)
    order = sorted(
        best.items(),
        key=lambda item: (-item[1][0], -len(photos[item[0]]), item[1][1], item[1][2]),
    )
    return [
        SightingCandidate(best=candidate, photo_count=len(photos[individual]))
        for individual, (_, _, _, candidate) in order
    ]
