"""Evaluation protocols over dataset records with embedding, local-feature or fused scores.

Shared by the CLI and the benchmarks so both compute the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from reid.data import Record, load_image
from reid.fusion import FusionCalibrator
from reid.local_features import Keypoints, extract, match
from reid.metrics import (
    closed_set_from_scores,
    cosine_matrix,
    leave_one_out_from_scores,
    open_set_from_scores,
)
from reid.splits import closed_set_split, open_set_split

PROTOCOLS = ("leave-one-out", "closed-set", "open-set")
SCORE_METHODS = ("embedding", "local", "fused")


def extract_all(records: Sequence[Record], method: str = "sift") -> list[Keypoints]:
    """Keypoints of every record's image."""
    return [extract(load_image(r), method=method) for r in records]


def inlier_matrix(
    query: Sequence[Keypoints], gallery: Sequence[Keypoints], same_set: bool = False,
    query_species: Sequence[str] | None = None, gallery_species: Sequence[str] | None = None,
) -> np.ndarray:
    """Inlier counts for every query/gallery pair (only within a species when species given).

    Args:
        query: query keypoints.
        gallery: gallery keypoints.
        same_set: query and gallery are the same list: match each unordered pair once and
            mirror it (the diagonal stays 0).
        query_species: species per query.
        gallery_species: species per gallery entry.

    Returns:
        ``(Q, G)`` float array of inlier counts.
    """
    inliers = np.zeros((len(query), len(gallery)), dtype=np.float64)
    for i, keypoints in enumerate(query):
        start = i + 1 if same_set else 0
        for j in range(start, len(gallery)):
            if query_species is not None and gallery_species is not None and (
                    query_species[i] != gallery_species[j]):
                continue
            inliers[i, j] = match(keypoints, gallery[j]).inliers
            if same_set:
                inliers[j, i] = inliers[i, j]
    return inliers


def score_matrix(
    method: str,
    query: Sequence[Record],
    gallery: Sequence[Record],
    embedder: Any | None = None,
    calibrator: FusionCalibrator | None = None,
    same_set: bool = False,
    query_embeddings: np.ndarray | None = None,
    gallery_embeddings: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Similarity scores of queries against gallery images.

    Args:
        method: ``"embedding"`` (cosine), ``"local"`` (inliers) or ``"fused"`` (probability).
        query: query records.
        gallery: gallery records.
        embedder: a :class:`reid.inference.Embedder` (embedding and fused methods).
        calibrator: fusion calibration (default :meth:`FusionCalibrator.default`).
        same_set: ``query`` and ``gallery`` are the same list.
        query_embeddings: precomputed query embeddings.
        gallery_embeddings: precomputed gallery embeddings.

    Returns:
        ``{"scores": (Q, G)}`` plus the ``cosine`` and/or ``inliers`` matrices used.
    """
    if method not in SCORE_METHODS:
        raise ValueError(f"method must be one of {SCORE_METHODS}")
    result: dict[str, np.ndarray] = {}
    if method in ("embedding", "fused"):
        if query_embeddings is None:
            query_embeddings = embedder.embed_records(query)
        if gallery_embeddings is None:
            gallery_embeddings = (query_embeddings if same_set
                                  else embedder.embed_records(gallery))
        result["cosine"] = cosine_matrix(query_embeddings, gallery_embeddings).astype(np.float64)
    if method in ("local", "fused"):
        query_keypoints = extract_all(query)
        gallery_keypoints = query_keypoints if same_set else extract_all(gallery)
        result["inliers"] = inlier_matrix(
            query_keypoints, gallery_keypoints, same_set,
            [r.species for r in query], [r.species for r in gallery])
    if method == "embedding":
        result["scores"] = result["cosine"]
    elif method == "local":
        result["scores"] = result["inliers"]
    else:
        calibrator = calibrator or FusionCalibrator.default()
        shape = result["cosine"].shape
        result["scores"] = calibrator.predict(
            result["cosine"].ravel(), result["inliers"].ravel()).reshape(shape)
    return result


def evaluate(
    records: Sequence[Record],
    protocol: str = "leave-one-out",
    method: str = "embedding",
    embedder: Any | None = None,
    calibrator: FusionCalibrator | None = None,
    seed: int = 0,
    threshold: float | None = None,
) -> dict[str, Any]:
    """Run one protocol on ``records``.

    ``leave-one-out`` uses every image; ``closed-set`` splits each identity's encounters into
    database and queries; ``open-set`` also holds out whole identities as "new". Scores of the
    last two are computed per species.

    Args:
        records: images to evaluate on.
        protocol: one of :data:`PROTOCOLS`.
        method: one of :data:`SCORE_METHODS`.
        embedder: needed for ``embedding`` and ``fused``.
        calibrator: fusion calibration.
        seed: split seed.
        threshold: open-set decision threshold (``None``: oracle, reported as such).

    Returns:
        Metrics; always ``top1, top5, mAP, n_queries`` and ``per_species``.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}")
    if protocol == "leave-one-out":
        scores = score_matrix(method, records, records, embedder, calibrator, same_set=True)
        species = [r.species for r in records]
        result = leave_one_out_from_scores(scores["scores"], [r.class_key for r in records],
                                           species)
        result.update(protocol=protocol, method=method)
        return result
    per_species: dict[str, dict[str, Any]] = {}
    for name in sorted({r.species for r in records}):
        members = [r for r in records if r.species == name]
        split = (closed_set_split(members, seed=seed) if protocol == "closed-set"
                 else open_set_split(members, seed=seed))
        if not split.test or not split.train:
            continue
        scores = score_matrix(method, split.test, split.train, embedder, calibrator)["scores"]
        database_ids = [r.class_key for r in split.train]
        query_ids = [r.class_key for r in split.test]
        if protocol == "closed-set":
            per_species[name] = closed_set_from_scores(scores, database_ids, query_ids)
        else:
            stats = open_set_from_scores(scores, database_ids, query_ids, threshold)
            stats.update({k: stats["known"][k] for k in ("top1", "top5", "mAP")})
            per_species[name] = stats
    keys = ["top1", "top5", "mAP"] + (["accuracy"] if protocol == "closed-set"
                                       else ["auroc", "balanced_accuracy"])
    result = {k: float(np.nanmean([v[k] for v in per_species.values()])) if per_species
              else float("nan") for k in keys}
    result["n_queries"] = int(sum(v["n_queries"] for v in per_species.values()))
    result.update(per_species=per_species, protocol=protocol, method=method)
    return result
