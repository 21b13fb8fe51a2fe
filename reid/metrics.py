"""Retrieval metrics for re-identification (pure numpy).

All functions take similarity scores where larger means "more likely the same individual"
(cosine of L2-normalised embeddings, inlier counts or fused probabilities). Ties are broken
by gallery order (stable sort), identically in every function.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

TOP_KS = (1, 5, 10)


def cosine_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity between rows of ``a`` and rows of ``b``."""
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return a @ b.T


def average_precision(relevant_in_rank_order: np.ndarray) -> float:
    """Average precision of one ranked list given a boolean relevance vector."""
    relevant = np.asarray(relevant_in_rank_order, dtype=bool)
    n_relevant = int(relevant.sum())
    if n_relevant == 0:
        return 0.0
    hits = np.cumsum(relevant)
    ranks = np.flatnonzero(relevant) + 1
    return float(np.mean(hits[relevant] / ranks))


def _rank_stats(
    scores: np.ndarray, gallery_labels: np.ndarray, query_label: Any
) -> tuple[int, float]:
    """First correct rank (0-based, or len when absent) and AP of one query."""
    order = np.argsort(-scores, kind="stable")
    relevant = gallery_labels[order] == query_label
    hits = np.flatnonzero(relevant)
    first = int(hits[0]) if hits.size else len(order)
    return first, average_precision(relevant)


def _summarise(first_ranks: list[int], aps: list[float]) -> dict[str, float]:
    ranks = np.asarray(first_ranks)
    result: dict[str, float] = {
        f"top{k}": float(np.mean(ranks < k)) if ranks.size else 0.0 for k in TOP_KS
    }
    result["mAP"] = float(np.mean(aps)) if aps else 0.0
    result["n_queries"] = int(ranks.size)
    return result


def _identity_scores(
    scores: np.ndarray, gallery_labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Aggregate per-image scores to per-identity scores by max (identities sorted)."""
    identities, inverse = np.unique(gallery_labels, return_inverse=True)
    aggregated = np.full(len(identities), -np.inf)
    np.maximum.at(aggregated, inverse, scores)
    return aggregated, identities


def closed_set_from_scores(
    scores: np.ndarray, database_identities: Sequence[Any], query_identities: Sequence[Any]
) -> dict[str, Any]:
    """Closed-set identification: each query's identity is in the database.

    Args:
        scores: ``(Q, G)`` similarities of queries to database images.
        database_identities: identity per database image.
        query_identities: identity per query.

    Returns:
        ``accuracy`` (1-NN over images, same as ``top1``), individual-level ``top1/5/10``
        (identities ranked by their best image) and ``mAP`` (image level), ``n_queries``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    gallery_labels = np.asarray([str(i) for i in database_identities])
    image_ranks, image_aps, identity_ranks = [], [], []
    for row, label in zip(scores, (str(i) for i in query_identities), strict=True):
        first, ap = _rank_stats(row, gallery_labels, label)
        image_ranks.append(first)
        image_aps.append(ap)
        aggregated, names = _identity_scores(row, gallery_labels)
        identity_ranks.append(_rank_stats(aggregated, names, label)[0])
    result: dict[str, Any] = _summarise(identity_ranks, image_aps)
    result["accuracy"] = float(np.mean(np.asarray(image_ranks) < 1)) if image_ranks else 0.0
    return result


def closed_set(
    database_embeddings: np.ndarray,
    database_identities: Sequence[Any],
    query_embeddings: np.ndarray,
    query_identities: Sequence[Any],
) -> dict[str, Any]:
    """Closed-set 1-NN accuracy by cosine similarity; see :func:`closed_set_from_scores`."""
    scores = cosine_matrix(query_embeddings, database_embeddings)
    return closed_set_from_scores(scores, database_identities, query_identities)


def auroc(scores: np.ndarray, positives: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties count one half).

    Args:
        scores: larger means more likely positive.
        positives: boolean labels.

    Returns:
        AUROC, or ``nan`` when one class is absent.
    """
    scores = np.asarray(scores, dtype=np.float64)
    positives = np.asarray(positives, dtype=bool)
    n_pos = int(positives.sum())
    n_neg = int((~positives).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    # Average ranks over ties.
    unique, first_index, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average_rank = first_index + (counts + 1) / 2.0
    ranks[order] = np.repeat(average_rank, counts)
    u = ranks[positives].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def balanced_accuracy(predicted: np.ndarray, actual: np.ndarray) -> float:
    """Mean of true-positive and true-negative rates for boolean predictions."""
    predicted = np.asarray(predicted, dtype=bool)
    actual = np.asarray(actual, dtype=bool)
    rates = [
        np.mean(predicted[actual == value] == value)
        for value in (True, False)
        if np.any(actual == value)
    ]
    return float(np.mean(rates)) if rates else float("nan")


def open_set_from_scores(
    scores: np.ndarray,
    database_identities: Sequence[Any],
    query_identities: Sequence[Any],
    threshold: float | None = None,
) -> dict[str, Any]:
    """New-individual detection from each query's best database score.

    A query is "new" when its identity is absent from the database; it is predicted new when
    its best score is below ``threshold``.

    Args:
        scores: ``(Q, G)`` similarities.
        database_identities: identity per database image.
        query_identities: identity per query.
        threshold: decision threshold; ``None`` uses the threshold that maximises balanced
            accuracy on these queries (an optimistic oracle, reported as such).

    Returns:
        ``auroc`` (new vs known from ``-best_score``), ``balanced_accuracy``, ``threshold``,
        ``n_new``, ``n_known``, and ``known`` closed-set metrics for known queries.
    """
    scores = np.asarray(scores, dtype=np.float64)
    known_labels = {str(i) for i in database_identities}
    query_labels = [str(i) for i in query_identities]
    is_new = np.array([label not in known_labels for label in query_labels], dtype=bool)
    best = scores.max(axis=1) if scores.shape[1] else np.full(len(query_labels), -np.inf)
    if threshold is None:
        candidates = np.unique(best)
        accuracies = [balanced_accuracy(best < t, is_new) for t in candidates]
        threshold = float(candidates[int(np.nanargmax(accuracies))]) if len(candidates) else 0.0
        chosen = "oracle"
    else:
        chosen = "given"
    known_rows = np.flatnonzero(~is_new)
    result: dict[str, Any] = {
        "auroc": auroc(-best, is_new),
        "balanced_accuracy": balanced_accuracy(best < threshold, is_new),
        "threshold": float(threshold),
        "threshold_source": chosen,
        "n_new": int(is_new.sum()),
        "n_known": int((~is_new).sum()),
        "n_queries": len(query_labels),
    }
    result["known"] = closed_set_from_scores(
        scores[known_rows], database_identities, [query_labels[i] for i in known_rows]
    )
    return result


def open_set(
    database_embeddings: np.ndarray,
    database_identities: Sequence[Any],
    query_embeddings: np.ndarray,
    query_identities: Sequence[Any],
    threshold: float | None = None,
) -> dict[str, Any]:
    """Open-set evaluation by cosine similarity; see :func:`open_set_from_scores`."""
    scores = cosine_matrix(query_embeddings, database_embeddings)
    return open_set_from_scores(scores, database_identities, query_identities, threshold)


def rate_standard_error(rate: float, n: int) -> float:
    """Standard error of a mean of ``n`` per-query values in [0, 1] whose mean is ``rate``.

    For hits (0 or 1 per query: top-1, top-5) it is exact: the sample standard deviation
    (ddof 1) over the square root of ``n``, ``sqrt(rate * (1 - rate) / (n - 1))``. For
    values in between (average precision per query, so mAP) it is an upper bound, since a
    [0, 1] variable with mean m has variance at most m (1 - m) (Bhatia and Davis 2000).
    Queries of one individual are not independent, so read it as a lower bound on the
    uncertainty of a score over few individuals.

    Args:
        rate: the mean (top-k rate or mAP).
        n: number of queries.

    Returns:
        The standard error (NaN below two queries).
    """
    if n < 2:
        return float("nan")
    rate = min(1.0, max(0.0, float(rate)))
    return float(np.sqrt(rate * (1.0 - rate) / (n - 1)))
