"""Metrics against brute-force references on small random data."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from reid.metrics import (
    auroc,
    balanced_accuracy,
    closed_set,
    leave_one_out,
    open_set,
)


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    n = 40
    embeddings = rng.normal(size=(n, 6)).astype(np.float32)
    identities = rng.integers(0, 7, size=n).astype(str)
    species = np.where(np.arange(n) < 22, "fish", "dog")
    embeddings[:, 0] += identities.astype(int) * 0.7  # some signal
    return embeddings, identities, species


def _brute_force_loo(embeddings, identities, species):
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    per_species = {}
    for name in sorted(set(species)):
        ranks, aps, id_ranks = [], [], []
        members = [i for i in range(len(unit)) if species[i] == name]
        for q in members:
            gallery = [g for g in members if g != q]
            if not any(identities[g] == identities[q] for g in gallery):
                continue
            scored = sorted(gallery, key=lambda g: -float(unit[q] @ unit[g]))
            correct = [identities[g] == identities[q] for g in scored]
            ranks.append(correct.index(True))
            precisions = [sum(correct[: i + 1]) / (i + 1) for i, c in enumerate(correct) if c]
            aps.append(sum(precisions) / len(precisions))
            best = {}
            for g in gallery:
                best[identities[g]] = max(best.get(identities[g], -9), float(unit[q] @ unit[g]))
            ordered = sorted(best, key=lambda i: -best[i])
            id_ranks.append(ordered.index(identities[q]))
        per_species[name] = dict(
            top1=np.mean([r < 1 for r in ranks]),
            top5=np.mean([r < 5 for r in ranks]),
            mAP=np.mean(aps),
            n=len(ranks),
            id_top1=np.mean([r < 1 for r in id_ranks]),
            id_mrr=np.mean([1 / (r + 1) for r in id_ranks]),
        )
    return per_species


def test_leave_one_out_matches_brute_force() -> None:
    embeddings, identities, species = _data()
    result = leave_one_out(embeddings, identities, species)
    reference = _brute_force_loo(embeddings, identities, species)
    for name, expected in reference.items():
        got = result["per_species"][name]
        assert got["n_queries"] == expected["n"]
        assert got["top1"] == pytest.approx(expected["top1"])
        assert got["top5"] == pytest.approx(expected["top5"])
        assert got["mAP"] == pytest.approx(expected["mAP"])
        assert got["individual"]["top1"] == pytest.approx(expected["id_top1"])
        assert got["individual"]["mAP"] == pytest.approx(expected["id_mrr"])
    assert result["top1"] == pytest.approx(np.mean([r["top1"] for r in reference.values()]))
    assert result["n_queries"] == sum(r["n"] for r in reference.values())


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
