"""The shortlist ranking shared by the app and every evaluation."""

from __future__ import annotations

import numpy as np
import pytest

from reid.fusion import FusionCalibrator
from reid.local_features import Match
from reid.ranking import COSINE_WEIGHT, Candidate, Neighbour, rank, shortlist


def _match(inliers: int) -> Match:
    return Match(inliers, np.zeros((inliers, 4), np.float32), inliers)


def test_shortlist_keeps_best_individuals_and_their_best_matched_photo() -> None:
    neighbours = [
        Neighbour("a1", "A", 0.9),
        Neighbour("b1", "B", 0.8),
        Neighbour("a2", "A", 0.7),
        Neighbour("c1", "C", 0.6),
        Neighbour("a3", "A", 0.5),
    ]
    inliers = {"a1": 5, "a2": 40, "a3": 99, "b1": 10, "c1": 0}
    matched = []

    def local(key: str) -> Match:
        matched.append(key)
        return _match(inliers[key])

    candidates = shortlist(neighbours, local, size=2, photos_per_candidate=2)
    assert [c.individual_id for c in candidates] == ["A", "B"]  # C is outside the shortlist
    assert candidates[0].annotation_id == "a2" and candidates[0].inliers == 40
    assert candidates[0].cosine == 0.9  # the individual's best cosine, whatever matched
    assert sorted(matched) == ["a1", "a2", "b1"]  # a3 is A's third photo: never matched


def test_each_method_orders_by_its_own_evidence() -> None:
    candidates = [
        Candidate("A", 1, 0.90, inliers=4),
        Candidate("B", 2, 0.85, inliers=60),
        Candidate("C", 3, 0.50, inliers=5),
    ]
    assert [c.individual_id for c in rank(candidates, "embedding")] == ["A", "B", "C"]
    assert [c.individual_id for c in rank(candidates, "local")] == ["B", "C", "A"]
    # w * cos + log1p(inliers): B is near A in cosine and far ahead in inliers.
    fused = rank(candidates, "fused")
    assert fused[0].individual_id == "B"
    assert fused[0].score == pytest.approx(COSINE_WEIGHT * 0.85 + np.log1p(60))
    # A cosine gap outweighs a few noise inliers: A (0.90, 4) beats C (0.50, 5).
    assert [c.individual_id for c in fused][1:] == ["A", "C"]
    # Every method gives each candidate the same calibrated probability.
    by_id = {c.individual_id: c.probability for c in fused}
    assert by_id == {c.individual_id: c.probability for c in rank(candidates, "embedding")}
    assert candidates[0].score == 0.0  # the input is left as it was


def test_calibrated_method_needs_a_fit_and_local_methods_need_inliers() -> None:
    candidates = [Candidate("A", 1, 0.9, inliers=1), Candidate("B", 2, 0.5, inliers=50)]
    unfitted = rank(candidates, "calibrated")  # no fit yet: the hand-set fusion ranks
    assert [c.score for c in unfitted] == [c.score for c in rank(candidates, "fused")]
    trusts_cosine = FusionCalibrator((30.0, -20.0), (0.01, 0.0), fitted_pairs=100)
    assert rank(candidates, "calibrated", trusts_cosine)[0].individual_id == "A"
    with pytest.raises(ValueError, match="inliers"):
        rank([Candidate("A", 1, 0.9)], "local")
