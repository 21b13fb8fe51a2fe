"""The evaluation core: honest protocol, metrics, BAKS/BAUS, and adopting a fusion."""

from __future__ import annotations

import numpy as np
import pytest

from reid.evaluation import (
    QueryShortlist,
    embedding_retrieval,
    evaluate_records,
    honest_queries,
    open_set_metrics,
    ranking_metrics,
    record_shortlists,
    shortlist_metrics,
    sighting_metrics,
    threshold_cross_validate,
    threshold_select,
)
from reid.fusion import FusionCalibrator
from reid.method_selection import method_select
from reid.ranking import Candidate, rank
from tests.reid.conftest import make_records


def _embeddings(angles_degrees: list[float]) -> np.ndarray:
    radians = np.radians(angles_degrees)
    return np.stack([np.cos(radians), np.sin(radians)], axis=1).astype(np.float32)


def test_the_query_encounter_is_never_in_the_gallery() -> None:
    # A's two photos of sighting s1 are near-duplicates; its other sighting looks different,
    # and B is closer than that. Leaving s1 in the gallery would rank A first for photo 0.
    records = make_records(
        [
            ("cat", "A", "s1"),
            ("cat", "A", "s1"),
            ("cat", "A", "s2"),
            ("cat", "B", "s3"),
            ("cat", "B", "s4"),
            ("cat", "C", "s5"),
        ]
    )
    vectors = _embeddings([0, 1, 80, 30, 35, 170])
    (query,) = record_shortlists(records, vectors, [0])
    assert [c.annotation_id for c in query.candidates] == [3, 2, 5]  # never photo 1
    leaky = record_shortlists(records, vectors, [0], gallery=lambda q: np.arange(len(records)) != q)
    assert leaky[0].candidates[0].individual_id == "cat/A"
    result = evaluate_records(records, vectors, methods=("embedding",))
    stats = result["per_species"]["cat"]["embedding"]
    # C has one sighting only: never a query. Every A photo is nearer B than its other
    # sighting; B's photos rank B first.
    assert stats["n_queries"] == 5
    assert stats["top1"] == pytest.approx(2 / 5)


def test_honest_queries_need_another_encounter() -> None:
    assert honest_queries(["A", "A", "B", "B", "C"], ["e1", "e1", "e2", "e3", "e4"]) == [2, 3]


def test_ranking_metrics_and_standard_errors() -> None:
    ranked = [Candidate("A", 0, 0.9), Candidate("B", 1, 0.8), Candidate("C", 2, 0.7)]
    stats = ranking_metrics([("A", ranked), ("B", ranked), ("Z", ranked), ("C", ranked)])
    assert stats["n_queries"] == 4
    assert stats["top1"] == 0.25 and stats["top5"] == 0.75
    assert stats["mAP"] == pytest.approx((1 + 1 / 2 + 0 + 1 / 3) / 4)
    assert stats["top1_se"] == pytest.approx(np.sqrt(0.25 * 0.75 / 4))


def test_sighting_top1_ranks_an_animals_photos_together() -> None:
    """Sighting s1 shows A in two photos: one ranks B first, the other A with a higher score,
    so the animal ranks A first. Sighting s2 shows B in one photo, which ranks A first."""

    def photo(*rows: tuple[str, float]) -> list[Candidate]:
        return [Candidate(i, f"{i}{s}", s, score=s) for i, s in rows]

    rankings = [
        ("s1", "A", photo(("B", 0.9), ("A", 0.8))),
        ("s1", "A", photo(("A", 0.95), ("C", 0.3))),
        ("s2", "B", photo(("A", 0.7), ("B", 0.6))),
    ]
    per_photo = ranking_metrics((truth, ranked) for _, truth, ranked in rankings)
    per_sighting = sighting_metrics(rankings)
    assert (per_photo["top1"], per_photo["n_queries"]) == (pytest.approx(1 / 3), 3)
    assert (per_sighting["sighting_top1"], per_sighting["n_sightings"]) == (0.5, 2)
    assert per_sighting["sighting_top1_se"] == pytest.approx(np.sqrt(0.25 / 2))
    # Two individuals in one sighting are two animals.
    two = sighting_metrics([("s1", "A", photo(("A", 0.9))), ("s1", "B", photo(("A", 0.9)))])
    assert (two["sighting_top1"], two["n_sightings"]) == (0.5, 2)
    assert sighting_metrics([]) == {
        "sighting_top1": None,
        "sighting_top1_se": None,
        "n_sightings": 0,
    }


def test_shortlist_metrics_rank_each_photo_and_each_sighting_by_the_method() -> None:
    shortlists = [
        QueryShortlist(0, "B", "s1", [Candidate("A", 1, 0.85, 0), Candidate("B", 2, 0.50, 8)]),
        QueryShortlist(1, "B", "s1", [Candidate("B", 3, 0.40, 0), Candidate("A", 4, 0.45, 0)]),
    ]
    fused = shortlist_metrics(shortlists, "fused")
    assert (fused["top1"], fused["sighting_top1"], fused["n_sightings"]) == (0.5, 1.0, 1)
    embedding = shortlist_metrics(shortlists, "embedding")
    assert (embedding["top1"], embedding["sighting_top1"]) == (0.0, 0.0)


def _first(individual: str, probability: float) -> list[Candidate]:
    return [Candidate(individual, 0, 0.5, probability=probability)]


def test_baks_baus_are_balanced_per_individual_and_the_threshold_maximises_their_mean() -> None:
    known = [
        ("A", _first("A", 0.9)),
        ("A", _first("A", 0.8)),
        ("A", _first("B", 0.7)),
        ("B", _first("B", 0.4)),
    ]
    unknown = [("A", _first("B", 0.3)), ("A", _first("B", 0.6)), ("B", _first("A", 0.5))]
    at = open_set_metrics(known, unknown, threshold=0.55)
    # Known: A right twice of three (0.9, 0.8 kept; 0.7 wrong), B flagged new: (2/3 + 0) / 2.
    assert at["BAKS"] == pytest.approx(1 / 3)
    # Unknown: A flagged once of twice, B flagged: (1/2 + 1) / 2.
    assert at["BAUS"] == pytest.approx(0.75)
    assert at["geometric_mean"] == pytest.approx(np.sqrt(0.25))
    best = threshold_select(known, unknown)
    assert best["geometric_mean"] >= at["geometric_mean"]
    for threshold in np.linspace(0, 1, 101):
        assert open_set_metrics(known, unknown, threshold)["geometric_mean"] <= (
            best["geometric_mean"] + 1e-12
        )


def test_the_threshold_is_judged_on_individuals_it_was_not_chosen_on() -> None:
    """X's known photo is the least sure of the known ones and its unknown photo the surest of
    the unknown ones: a threshold fitted to all four individuals separates them perfectly
    (in-sample, a geometric mean of 1), but chosen without X it lets X's unknown photo pass
    as known. The reported figures are the held-out ones."""
    known = [(name, _first(name, p)) for name, p in zip("ABCX", (0.9, 0.8, 0.7, 0.6))]
    unknown = [(name, _first("Z", p)) for name, p in zip("ABCX", (0.1, 0.2, 0.3, 0.55))]
    in_sample = threshold_select(known, unknown)
    assert in_sample["geometric_mean"] == 1.0  # what the in-sample protocol reported

    result = threshold_cross_validate(known, unknown, folds=4)  # one individual per fold
    assert result["folds"] == 4 and (result["n_known"], result["n_unknown"]) == (4, 4)
    # Without X, the lowest threshold that separates the rest is between 0.3 and 0.7: 0.5.
    assert sorted(result["fold_thresholds"]) == pytest.approx([0.5, 0.575, 0.575, 0.575])
    assert (result["BAKS"], result["BAUS"]) == (1.0, 0.75)  # X's unknown photo is missed
    assert result["geometric_mean"] == pytest.approx(np.sqrt(0.75))
    # What is stored is chosen on all individuals; its in-sample figures are kept apart.
    assert result["threshold"] == pytest.approx(in_sample["threshold"]) == pytest.approx(0.575)
    assert result["in_sample"]["geometric_mean"] == 1.0


def test_held_out_figures_need_two_individuals_and_follow_the_seed() -> None:
    alone = threshold_cross_validate([("A", _first("A", 0.9))], [("A", _first("B", 0.2))])
    assert alone["folds"] == 0 and alone["fold_thresholds"] == []
    assert alone["BAKS"] is alone["BAUS"] is alone["geometric_mean"] is None  # not measured
    assert alone["threshold"] == pytest.approx(0.55)  # still chosen, on the one individual
    rng = np.random.default_rng(0)
    names = [f"i{i}" for i in range(12) for _ in range(2)]
    known = [(n, _first(n if rng.uniform() < 0.8 else "Z", rng.uniform())) for n in names]
    unknown = [(n, _first("Z", rng.uniform(0, 0.7))) for n in names]
    result = threshold_cross_validate(known, unknown, seed=1)
    assert result["folds"] == 5 and len(result["fold_thresholds"]) == 5
    assert result == threshold_cross_validate(known, unknown, seed=1)
    assert 0.0 <= result["geometric_mean"] <= 1.0


def _two_candidate_query(
    index: int, truth: tuple[float, int], other: tuple[float, int]
) -> QueryShortlist:
    return QueryShortlist(
        f"q{index}",
        "T",
        f"e{index}",
        [
            Candidate("T", f"t{index}", truth[0], inliers=truth[1]),
            Candidate(f"W{index}", f"w{index}", other[0], inliers=other[1]),
        ],
    )


def test_a_calibration_that_would_lower_top1_is_refused() -> None:
    # The true individual always has the higher cosine. Across all pairs many inliers mean
    # "same" (30 queries), but in 10 queries a wrong candidate has more inliers: any fusion
    # that trusts the inliers loses those, so embedding alone must keep ranking.
    queries = [_two_candidate_query(i, (0.86, 25), (0.85, 0)) for i in range(30)]
    queries += [_two_candidate_query(30 + i, (0.90, 20), (0.895, 60)) for i in range(10)]
    encounter_of = {c.annotation_id: f"g{c.annotation_id}" for q in queries for c in q.candidates}
    selection = method_select(queries, encounter_of)
    top1 = selection["top1"]
    assert top1["embedding"] == 1.0
    assert top1["calibrated"] < 1.0 and top1["fused"] < 1.0
    assert selection["method"] == "embedding"
    assert selection["reason"].startswith("refused fusion")
    assert selection["calibrator"] is not None  # still fitted, for the probabilities


def test_a_calibration_that_helps_is_adopted() -> None:
    rng = np.random.default_rng(0)
    queries = []
    for i in range(40):  # cosine is a coin toss; inliers tell the truth
        a, b = rng.uniform(0.6, 0.7, size=2)
        queries.append(
            _two_candidate_query(i, (a, int(rng.integers(20, 40))), (b, int(rng.integers(0, 8))))
        )
    selection = method_select(queries, {})
    assert selection["top1"]["embedding"] < 0.8
    assert selection["method"] in ("calibrated", "fused")
    assert selection["top1"][selection["method"]] >= selection["top1"]["local"]


def test_a_calibration_with_a_wrong_sign_is_refused_even_when_it_ranks_better(caplog) -> None:  # noqa: ANN001
    # Here the wrong candidate always has more inliers: a fit learns "more inliers, less
    # likely the same" and would rank every query right by trusting that accident. It is
    # refused and logged, and the guard chooses among the other methods (embedding here).
    rng = np.random.default_rng(1)
    queries = []
    for i in range(40):
        a, b = rng.uniform(0.6, 0.7, size=2)
        queries.append(
            _two_candidate_query(i, (a, int(rng.integers(0, 5))), (b, int(rng.integers(20, 40))))
        )
    encounter_of = {c.annotation_id: f"g{c.annotation_id}" for q in queries for c in q.candidates}
    pairs = [
        (c.cosine, c.inliers, c.individual_id == q.truth) for q in queries for c in q.candidates
    ]
    wrong_signed = FusionCalibrator.default().fit(*zip(*pairs))
    assert wrong_signed.wrong_sign_scores() == ["inliers"]
    trusted = [rank(q.candidates, "calibrated", wrong_signed)[0].individual_id for q in queries]
    assert trusted.count("T") == 40  # what adopting it would have "won"

    with caplog.at_level("WARNING", logger="reid.method_selection"):
        selection = method_select(queries, encounter_of)

    assert selection["calibrator"] is None and "calibrated" not in selection["top1"]
    assert "inliers" in selection["calibration_refused"]
    assert "refused calibration" in selection["reason"]
    assert selection["method"] == "embedding"
    assert selection["top1"]["local"] == 0.0 and selection["top1"]["fused"] < 0.5
    assert any("refused calibration" in r.getMessage() for r in caplog.records)


def _brute_force_honest(vectors, records):  # noqa: ANN001, ANN202
    """Reciprocal ranks per species, written out the long way."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    per_species: dict[str, list[float]] = {}
    for q, query in enumerate(records):
        gallery = [
            g
            for g, photo in enumerate(records)
            if photo.species == query.species and photo.encounter != query.encounter
        ]
        if not any(records[g].identity == query.identity for g in gallery):
            continue  # its individual has no other encounter
        best: dict[str, float] = {}
        for g in gallery:
            score = float(unit[q] @ unit[g])
            best[records[g].identity] = max(best.get(records[g].identity, -9.0), score)
        ordered = sorted(best, key=lambda name: -best[name])
        per_species.setdefault(query.species, []).append(1 / (ordered.index(query.identity) + 1))
    return per_species


def test_embedding_retrieval_keeps_the_query_encounter_out_and_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    spec = [
        (species, f"id{i % 6}", f"enc{i // 2}")  # two photos per encounter
        for i, species in enumerate(["fish"] * 24 + ["dog"] * 20)
    ]
    spec += [("dog", "loner", "enc-only")] * 2  # one encounter: never a query
    records = make_records(spec)
    vectors = rng.normal(size=(len(records), 6))
    for i, record in enumerate(records):
        vectors[i, 0] += int(record.identity[2:] if record.identity != "loner" else 9) * 0.5
    # A photo's encounter twin is the same individual and near-identical: a leaky protocol
    # would find it first every time.
    for i in range(0, len(records), 2):
        vectors[i + 1] = vectors[i] + 1e-3

    result = embedding_retrieval(vectors, records)

    reference = _brute_force_honest(vectors, records)
    assert set(result["per_species"]) == set(reference) == {"fish", "dog"}
    for name, reciprocal in reference.items():
        got = result["per_species"][name]
        assert got["n_queries"] == len(reciprocal)
        assert got["top1"] == pytest.approx(np.mean([r == 1 for r in reciprocal]))
        assert got["mAP"] == pytest.approx(np.mean(reciprocal))
    assert result["n_queries"] == sum(len(r) for r in reference.values()) == 44
    assert result["top1"] < 1.0  # the twins were kept out
