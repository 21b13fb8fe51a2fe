"""Metrics against brute-force references on small random data."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from reid.metrics import (
    auroc,
    balanced_accuracy,
    closed_set,
    open_set,
)


def test_closed_set_accuracy_is_nearest_neighbour_accuracy() -> None:
    rng = np.random.default_rng(1)
    database = rng.normal(size=(15, 4))
    database_ids = [str(i % 5) for i in range(15)]
    queries = database[:10] + rng.normal(scale=0.8, size=(10, 4))
    query_ids = database_ids[:10]
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    nearest = np.argmax(unit(queries) @ unit(database).T, axis=1)
    expected = np.mean([database_ids[j] == q for j, q in zip(nearest, query_ids)])
    result = closed_set(database, database_ids, queries, query_ids)
    assert result["accuracy"] == pytest.approx(expected)


def test_auroc_matches_pairwise_count() -> None:
    rng = np.random.default_rng(2)
    scores = np.round(rng.normal(size=30), 1)  # ties included
    positives = rng.random(30) > 0.6
    wins = 0.0
    for p, n in itertools.product(scores[positives], scores[~positives]):
        wins += 1.0 if p > n else 0.5 if p == n else 0.0
    expected = wins / (positives.sum() * (~positives).sum())
    assert auroc(scores, positives) == pytest.approx(expected)


def test_balanced_accuracy_and_open_set() -> None:
    assert balanced_accuracy([1, 1, 0, 0], [1, 0, 0, 0]) == pytest.approx((1 + 2 / 3) / 2)
    database = np.eye(4)
    queries = np.array([[1, 0.1, 0, 0], [0, 0, 0.1, 1], [-1, -1, -1, -1.0]])
    result = open_set(database, ["a", "b", "c", "d"], queries, ["a", "d", "new"], threshold=0.5)
    assert result["auroc"] == 1.0 and result["balanced_accuracy"] == 1.0
    assert result["n_new"] == 1 and result["known"]["top1"] == 1.0


def test_rate_standard_error_is_that_of_the_per_query_hits() -> None:
    from reid.metrics import rate_standard_error

    hits = np.array([1, 0, 0, 1, 1, 0, 0, 0, 1, 0], dtype=float)  # top-1 0.4 over 10 queries
    expected = hits.std(ddof=1) / np.sqrt(hits.size)
    assert rate_standard_error(hits.mean(), hits.size) == pytest.approx(expected)
    average_precisions = np.array([1.0, 0.5, 0.25, 0.2, 1.0, 0.1])  # bounded by the 0/1 case
    bound = rate_standard_error(average_precisions.mean(), average_precisions.size)
    assert average_precisions.std(ddof=1) / np.sqrt(average_precisions.size) <= bound
    assert rate_standard_error(1.0, 30) == 0.0
    assert np.isnan(rate_standard_error(1.0, 1))
