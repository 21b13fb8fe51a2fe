"""The shortlist ranking shared by the app and every evaluation."""

from __future__ import annotations

import numpy as np
import pytest

from reid.fusion import FusionCalibrator
from reid.local_features import Match
from reid.ranking import (
    CALIBRATED,
    COSINE_WEIGHT,
    EMBEDDING,
    FUSED,
    LOCAL,
    METHODS,
    Candidate,
    Neighbour,
    method_score,
    rank,
    shortlist,
    sighting_combine,
)


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


TRUSTS_COSINE = FusionCalibrator((30.0, -20.0), (0.01, 0.0), fitted_pairs=100)


@pytest.mark.parametrize("method", METHODS)
def test_method_score_is_what_rank_orders_by(method: str) -> None:
    """A brute-force reference of each method's score; rank sorts by exactly it."""
    cosine, inliers = np.array([0.9, 0.85, 0.5, 0.7]), np.array([4, 60, 5, 4])
    reference = {
        EMBEDDING: cosine,
        LOCAL: inliers + 1e-3 * cosine,
        FUSED: COSINE_WEIGHT * cosine + np.log1p(inliers),
        CALIBRATED: TRUSTS_COSINE.predict(cosine, inliers),
    }[method]
    scores = method_score(method, cosine, inliers, TRUSTS_COSINE)
    np.testing.assert_allclose(scores, reference)
    candidates = [Candidate(i, i, c, int(n)) for i, (c, n) in enumerate(zip(cosine, inliers))]
    ranked = rank(candidates, method, TRUSTS_COSINE)
    assert [c.individual_id for c in ranked] == list(np.argsort(-reference, kind="stable"))
    assert [c.score for c in ranked] == pytest.approx(sorted(reference, reverse=True))
    # One candidate at a time gives the same number (what the app stores per row).
    assert method_score(method, 0.85, 60, TRUSTS_COSINE) == pytest.approx(reference[1])


def test_method_score_refuses_local_methods_without_inliers_and_unknown_methods() -> None:
    assert method_score(EMBEDDING, [0.3, 0.8]).tolist() == [0.3, 0.8]
    for method in (LOCAL, FUSED, CALIBRATED):
        with pytest.raises(ValueError, match="inliers"):
            method_score(method, [0.3])
    with pytest.raises(ValueError, match="method must be one of"):
        method_score("sift", [0.3], [1])


def test_calibrated_score_without_a_fit_is_the_hand_set_fusion() -> None:
    unfitted = FusionCalibrator.default()
    assert method_score(CALIBRATED, 0.5, 8, unfitted) == method_score(FUSED, 0.5, 8)
    assert method_score(CALIBRATED, 0.5, 8) == pytest.approx(COSINE_WEIGHT * 0.5 + np.log1p(8))


def test_the_fused_score_and_the_probability_can_disagree() -> None:
    """The reported flip: the hand-set fusion ranks 0.50 / 8 inliers above 0.85 / 0 inliers,
    while the calibrated probability says the opposite; the ranking follows the score."""
    candidates = [Candidate("A", 1, 0.85, inliers=0), Candidate("B", 2, 0.50, inliers=8)]
    ranked = rank(candidates, FUSED)
    assert [c.individual_id for c in ranked] == ["B", "A"]
    assert ranked[0].probability < ranked[1].probability


def test_sighting_combine_keeps_each_individuals_best_photo() -> None:
    first = rank([Candidate("A", 1, 0.70), Candidate("B", 2, 0.40)], EMBEDDING)
    second = rank([Candidate("B", 3, 0.90), Candidate("C", 4, 0.50)], EMBEDDING)
    combined = sighting_combine([first, second])
    assert [(c.individual_id, c.score, c.photo_count) for c in combined] == [
        ("B", 0.90, 2),
        ("A", 0.70, 1),
        ("C", 0.50, 1),
    ]
    assert combined[0].best.annotation_id == 3  # B's evidence is the second photo's


def test_sighting_combine_breaks_ties_by_photos_then_position_then_photo() -> None:
    def photo(*rows: tuple[str, float]) -> list[Candidate]:
        return [Candidate(i, f"{i}{s}", 0.0, score=s) for i, s in rows]

    # A and B tie on 0.8: B is in both photos, so B first.
    combined = sighting_combine([photo(("A", 0.8), ("B", 0.8)), photo(("B", 0.2))])
    assert [c.individual_id for c in combined] == ["B", "A"]
    assert combined[0].best.annotation_id == "B0.8"
    # Equal score and photos: the better position in its photo, then the earlier photo.
    combined = sighting_combine([photo(("C", 0.5), ("D", 0.5)), photo(("E", 0.5))])
    assert [c.individual_id for c in combined] == ["C", "E", "D"]


def test_one_photo_sighting_ranks_as_rank_does_for_every_method() -> None:
    candidates = [
        Candidate("A", 1, 0.90, inliers=4),
        Candidate("B", 2, 0.85, inliers=60),
        Candidate("C", 3, 0.50, inliers=5),
        Candidate("D", 4, 0.88, inliers=4),
    ]
    for method in METHODS:
        ranked = rank(candidates, method, TRUSTS_COSINE)
        combined = sighting_combine([ranked])
        assert [c.individual_id for c in combined] == [c.individual_id for c in ranked]
        assert [c.best for c in combined] == ranked
