"""The one evaluation core: honest protocol, metrics and method comparison.

Protocol. A query is ranked as the app ranks a new animal (:mod:`reid.ranking`), against a
gallery that never holds its own encounter (sighting): photos of one sighting share a
background and a pose, so leaving them in measures the background. A query counts only when
its individual has a photo in another encounter. For the open-set simulation the query's
individual is removed from the gallery entirely (leave-individuals-out): it is then a new
animal, and the "probably new" threshold must flag it.

Choosing the ranking method a species adopts (calibrated fusion against the best single
method) is :mod:`reid.method_selection`, on the shortlists built here.

Metrics. Top-1, top-5 and mAP over individuals (one is correct, so AP is 1/rank, 0 outside
the shortlist), with binomial / sample standard errors; top-1 per sighting, its photos
combined as the review combines them; open set: BAKS, BAUS and their geometric mean
(AnimalCLEF 2025), of a "probably new" threshold chosen on other individuals than those it is
judged on (:func:`threshold_cross_validate`).

Callers: the app's ``evaluate`` and ``calibrate`` (shortlists from pgvector), the training
report, ``reid eval`` and the benchmarks (shortlists from :func:`record_shortlists`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from reid.data import Record, load_image
from reid.fusion import FusionCalibrator
from reid.local_features import Keypoints, Match, extract, match
from reid.metrics import cosine_matrix
from reid.ranking import (
    EMBEDDING,
    NEIGHBOURS,
    SHORTLIST,
    Candidate,
    Neighbour,
    rank,
    shortlist,
    sighting_combine,
)
from reid.ranking import photos_per_candidate as ranking_photos
from reid.splits import individual_folds


@dataclass
class QueryShortlist:
    """One query's shortlist (unranked), with what the protocol needs to know about it."""

    query: Hashable
    truth: Hashable
    encounter: Hashable
    candidates: list[Candidate]


def honest_queries(identities: Sequence[Hashable], encounters: Sequence[Hashable]) -> list[int]:
    """Indices of the photos whose individual also has a photo in another encounter."""
    encounters_of: dict[Hashable, set] = defaultdict(set)
    for identity, encounter in zip(identities, encounters, strict=True):
        encounters_of[identity].add(encounter)
    return [i for i, identity in enumerate(identities) if len(encounters_of[identity]) > 1]


def ranking_metrics(rankings: Iterable[tuple[Hashable, Sequence[Candidate]]]) -> dict[str, Any]:
    """Top-1, top-5, mAP (1/rank) and their standard errors over ranked queries.

    Args:
        rankings: ``(true individual, ranked candidates)`` per query.

    Returns:
        ``top1, top5, mAP, n_queries`` and ``top1_se, top5_se, mAP_se``; ``None`` values when
        there is no query.
    """
    reciprocal = []
    for truth, ranked in rankings:
        ids = [c.individual_id for c in ranked]
        reciprocal.append(1.0 / (ids.index(truth) + 1) if truth in ids else 0.0)
    return _reciprocal_rank_metrics(reciprocal)


def sighting_metrics(
    rankings: Iterable[tuple[Hashable, Hashable, Sequence[Candidate]]],
) -> dict[str, Any]:
    """Top-1 per animal of a sighting: its photos' rankings combined as the review combines
    them (:func:`reid.ranking.sighting_combine`).

    Args:
        rankings: ``(sighting, true individual, ranked candidates)`` per query photo; the
            photos of one individual in one sighting are one animal.

    Returns:
        ``sighting_top1``, its binomial standard error ``sighting_top1_se`` and
        ``n_sightings`` (``None`` values when there is no query).
    """
    animals: dict[tuple[Hashable, Hashable], list[Sequence[Candidate]]] = defaultdict(list)
    for sighting, truth, ranked in rankings:
        animals[(sighting, truth)].append(ranked)
    metrics = ranking_metrics(
        (truth, [c.best for c in sighting_combine(photos)])
        for (_, truth), photos in animals.items()
    )
    return {
        "sighting_top1": metrics["top1"],
        "sighting_top1_se": metrics["top1_se"],
        "n_sightings": metrics["n_queries"],
    }


def shortlist_metrics(
    shortlists: Sequence[QueryShortlist],
    method: str,
    calibrator: FusionCalibrator | None = None,
) -> dict[str, Any]:
    """:func:`ranking_metrics` per photo and :func:`sighting_metrics` per sighting, of the
    shortlists ranked by one method."""
    ranked = [(s, rank(s.candidates, method, calibrator)) for s in shortlists]
    return ranking_metrics((s.truth, r) for s, r in ranked) | sighting_metrics(
        (s.encounter, s.truth, r) for s, r in ranked
    )


def _reciprocal_rank_metrics(reciprocal: Sequence[float]) -> dict[str, Any]:
    n = len(reciprocal)
    if n == 0:
        return {key: None for key in ("top1", "top5", "mAP", "top1_se", "top5_se", "mAP_se")} | {
            "n_queries": 0
        }
    values = np.asarray(reciprocal)
    result: dict[str, Any] = {"n_queries": n}
    for k in (1, 5):
        p = float(np.mean(values >= 1.0 / k - 1e-12))
        result[f"top{k}"], result[f"top{k}_se"] = p, math.sqrt(p * (1 - p) / n)
    result["mAP"] = float(values.mean())
    result["mAP_se"] = float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    return result


def embedding_retrieval(vectors: np.ndarray, records: Sequence[Record]) -> dict[str, Any]:
    """Embedding-only ranking of every honest query among ``records``, by cosine.

    The protocol of this module without a shortlist: within each species, each photo whose
    individual has a photo in another encounter is ranked against the species' photos outside
    its own encounter, each individual scoring its best photo. For early stopping, a training
    run's learning signal and the benchmarks that embed whole test sets.

    Args:
        vectors: ``(N, D)`` embeddings, one per record.
        records: the photos (identity, species and encounter are read; an empty encounter
            is the photo's own).

    Returns:
        ``top1, top5, mAP, n_queries`` and standard errors (as :func:`ranking_metrics`) over
        all queries, and ``per_species`` with the same keys per species.
    """
    scores = cosine_matrix(vectors, vectors).astype(np.float64)
    individuals = np.asarray([r.class_key for r in records])
    encounters = np.asarray(
        [f"{r.species}/{r.encounter}" if r.encounter else f"image:{r.image_id}" for r in records]
    )
    species = np.asarray([r.species for r in records])
    reciprocal_of: dict[str, list[float]] = defaultdict(list)
    for query in honest_queries(individuals.tolist(), encounters.tolist()):
        gallery = np.flatnonzero((species == species[query]) & (encounters != encounters[query]))
        best: dict[str, float] = {}
        for index in gallery:
            name = individuals[index]
            best[name] = max(best.get(name, -np.inf), scores[query, index])
        truth = best[individuals[query]]
        reciprocal_of[species[query]].append(1.0 / (1 + sum(v > truth for v in best.values())))
    result = _reciprocal_rank_metrics([r for values in reciprocal_of.values() for r in values])
    result["per_species"] = {
        name: _reciprocal_rank_metrics(values) for name, values in sorted(reciprocal_of.items())
    }
    return result


def methods_compare(
    shortlists: Sequence[QueryShortlist],
    methods: Sequence[str],
    calibrator: FusionCalibrator | None = None,
) -> dict[str, dict[str, Any]]:
    """Metrics of each ranking method over the same shortlists (matched once), per photo and
    per sighting (:func:`shortlist_metrics`)."""
    return {method: shortlist_metrics(shortlists, method, calibrator) for method in methods}


def open_set_metrics(
    known: Sequence[tuple[Hashable, Sequence[Candidate]]],
    unknown: Sequence[tuple[Hashable, Sequence[Candidate]]],
    threshold: float,
) -> dict[str, Any]:
    """BAKS, BAUS and their geometric mean at a "probably new" threshold (AnimalCLEF 2025).

    A query is called new when its first candidate's probability is below ``threshold``.
    BAKS: over known queries, correct when not called new and the first candidate is right;
    BAUS: over unknown queries, correct when called new. Both are balanced: the mean of the
    per-individual accuracies.

    Args:
        known: ``(truth, ranked)`` for queries whose individual is in the gallery.
        unknown: ``(truth, ranked)`` for the same queries with their individual removed.
        threshold: the probability below which an animal is probably new.

    Returns:
        ``BAKS, BAUS, geometric_mean, threshold, n_known, n_unknown``.
    """
    return _open_set_scores(
        [_known_right(t, r, threshold) for t, r in known],
        [_unknown_right(t, r, threshold) for t, r in unknown],
    ) | {
        "threshold": float(threshold),
        "n_known": len(known),
        "n_unknown": len(unknown),
    }


def _called_new(ranked: Sequence[Candidate], threshold: float) -> bool:
    return not ranked or ranked[0].probability < threshold


def _known_right(
    truth: Hashable, ranked: Sequence[Candidate], threshold: float
) -> tuple[Hashable, bool]:
    """A known query is right when not called new and its first candidate is the animal."""
    return truth, not _called_new(ranked, threshold) and ranked[0].individual_id == truth


def _unknown_right(
    truth: Hashable, ranked: Sequence[Candidate], threshold: float
) -> tuple[Hashable, bool]:
    """An unknown query is right when called new."""
    return truth, _called_new(ranked, threshold)


def _balanced(rows: Iterable[tuple[Hashable, bool]]) -> float | None:
    """The mean of the per-individual accuracies (``None`` without a row)."""
    per_individual: dict[Hashable, list[bool]] = defaultdict(list)
    for truth, correct in rows:
        per_individual[truth].append(correct)
    if not per_individual:
        return None
    return float(np.mean([np.mean(v) for v in per_individual.values()]))


def _open_set_scores(
    known: Iterable[tuple[Hashable, bool]], unknown: Iterable[tuple[Hashable, bool]]
) -> dict[str, float | None]:
    """BAKS and BAUS of ``(individual, right)`` rows, and their geometric mean."""
    baks, baus = _balanced(known), _balanced(unknown)
    mean = math.sqrt(baks * baus) if baks is not None and baus is not None else None
    return {"BAKS": baks, "BAUS": baus, "geometric_mean": mean}


def threshold_select(
    known: Sequence[tuple[Hashable, Sequence[Candidate]]],
    unknown: Sequence[tuple[Hashable, Sequence[Candidate]]],
) -> dict[str, Any]:
    """The threshold that maximises the geometric mean of BAKS and BAUS.

    Candidates are the midpoints between consecutive first-candidate probabilities (and
    both ends); ties go to the lowest threshold, which hides the fewest known animals.
    """
    tops = sorted({r[0].probability for _, r in (*known, *unknown) if r})
    if not tops:
        return open_set_metrics(known, unknown, 0.5)
    options = [tops[0] - 1e-6] + [(a + b) / 2 for a, b in zip(tops, tops[1:])] + [tops[-1] + 1e-6]
    best = None
    for threshold in options:
        stats = open_set_metrics(known, unknown, threshold)
        if best is None or (stats["geometric_mean"] or 0) > (best["geometric_mean"] or 0):
            best = stats
    return best


def threshold_cross_validate(
    known: Sequence[tuple[Hashable, Sequence[Candidate]]],
    unknown: Sequence[tuple[Hashable, Sequence[Candidate]]],
    folds: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """The "probably new" threshold, with BAKS and BAUS measured on held-out individuals.

    :func:`threshold_select`'s own figures are in-sample, so optimistic: the threshold is
    fitted to the very queries it is judged on. Here the individuals are dealt into folds
    (:func:`reid.splits.individual_folds`, seeded); for each fold the threshold is chosen on
    the other folds' known and unknown queries and applied to the fold's own. Every
    individual is so judged once, at a threshold chosen without it: BAKS and BAUS are
    balanced over all individuals judged (pooled over the folds), their geometric mean is of
    those two. The threshold returned, the one to store, is chosen on all individuals (more
    data than any fold's); the held-out figures estimate how such a choice does on
    individuals it has not seen.

    Args:
        known: ``(truth, ranked)`` for queries whose individual is in the gallery.
        unknown: ``(truth, ranked)`` for queries whose individual is not.
        folds: folds wanted; fewer when there are fewer individuals.
        seed: the seed of the folds.

    Returns:
        ``threshold`` (chosen on all individuals); held-out ``BAKS, BAUS, geometric_mean``
        (``None`` with fewer than two individuals); ``n_known, n_unknown``; ``folds`` used
        (0: not measured) and ``fold_thresholds``; ``in_sample``: the stored threshold's
        BAKS, BAUS and geometric mean on the queries it was chosen on.
    """
    chosen = threshold_select(known, unknown)
    dealt = individual_folds((t for t, _ in (*known, *unknown)), folds, seed)
    if len(dealt) < 2:
        dealt = []
    known_rows, unknown_rows, thresholds = [], [], []
    for held_out in dealt:
        fitted = threshold_select(
            [q for q in known if q[0] not in held_out], [q for q in unknown if q[0] not in held_out]
        )["threshold"]
        thresholds.append(fitted)
        known_rows += [_known_right(t, r, fitted) for t, r in known if t in held_out]
        unknown_rows += [_unknown_right(t, r, fitted) for t, r in unknown if t in held_out]
    return _open_set_scores(known_rows, unknown_rows) | {
        "threshold": chosen["threshold"],
        "n_known": len(known),
        "n_unknown": len(unknown),
        "folds": len(dealt),
        "fold_thresholds": thresholds,
        "in_sample": {key: chosen[key] for key in ("BAKS", "BAUS", "geometric_mean")},
    }


# --- Shortlists of dataset records (CLI, training report, benchmarks) -----------------------


class PairMatcher:
    """Keypoints of records, extracted once, and their matches, memoised.

    A match is not symmetric (the ratio test and the inlier threshold depend on which image
    is the query), so pairs are kept in the direction the app matches them: query first.
    """

    def __init__(self, records: Sequence[Record], method: str = "sift") -> None:
        self.records = records
        self.method = method
        self._keypoints: dict[int, Keypoints] = {}
        self._matches: dict[tuple[int, int], Match] = {}

    def keypoints(self, index: int) -> Keypoints:
        if index not in self._keypoints:
            self._keypoints[index] = extract(load_image(self.records[index]), method=self.method)
        return self._keypoints[index]

    def __call__(self, query: int, gallery: int) -> Match:
        key = (query, gallery)
        if key not in self._matches:
            self._matches[key] = match(self.keypoints(query), self.keypoints(gallery))
        return self._matches[key]

    @property
    def pairs_matched(self) -> int:
        return len(self._matches)


def record_shortlists(
    records: Sequence[Record],
    embeddings: np.ndarray,
    queries: Sequence[int],
    matcher: Callable[[int, int], Match] | None = None,
    gallery: Callable[[int], np.ndarray] | None = None,
    exclude_individual: bool = False,
    size: int = SHORTLIST,
    photos_per_candidate: int | None = None,
) -> list[QueryShortlist]:
    """Shortlists of record queries, built as the app builds them.

    Args:
        records: all photos (queries and gallery), one species or several.
        embeddings: one vector per record.
        queries: indices of the query records.
        matcher: local matcher of two record indices (e.g. a :class:`PairMatcher`);
            ``None``: embedding only.
        gallery: boolean mask of the gallery for a query index; default: the query's species
            outside its encounter (the honest leave-one-out protocol).
        exclude_individual: also remove the query's individual (the open-set simulation).
        size: individuals shortlisted.
        photos_per_candidate: photos matched per shortlisted individual; default the app's
            for the matcher's method (``matcher.method``), else 2.

    Returns:
        One :class:`QueryShortlist` per query, ``query`` being the record index.
    """
    cosine = cosine_matrix(embeddings[list(queries)], embeddings).astype(np.float64)
    identities = np.array([r.class_key for r in records])
    species = np.array([r.species for r in records])
    encounters = np.array([r.encounter_key for r in records])
    if photos_per_candidate is None:
        photos_per_candidate = ranking_photos(getattr(matcher, "method", "sift"))
    result = []
    for row, q in zip(cosine, queries, strict=True):
        mask = gallery(q) if gallery else (species == species[q]) & (encounters != encounters[q])
        if exclude_individual:
            mask = mask & (identities != identities[q])
        allowed = np.flatnonzero(mask)
        nearest = allowed[np.argsort(-row[allowed], kind="stable")[:NEIGHBOURS]]
        neighbours = [Neighbour(int(g), identities[g], float(row[g])) for g in nearest]
        local = (lambda g, q=q: matcher(q, g)) if matcher else None
        result.append(
            QueryShortlist(
                q,
                identities[q],
                encounters[q],
                shortlist(neighbours, local, size, photos_per_candidate),
            )
        )
    return result


def evaluate_records(
    records: Sequence[Record],
    embeddings: np.ndarray,
    methods: Sequence[str] = (EMBEDDING,),
    matcher: Callable[[int, int], Match] | None = None,
    calibrator: FusionCalibrator | None = None,
    max_queries: int | None = None,
    seed: int = 0,
    open_set: bool = False,
    threshold: float | None = None,
) -> dict[str, Any]:
    """Honest leave-one-out over records, per species, for several ranking methods.

    Args:
        records: photos of one or more species (``encounter`` as in ``metadata.csv``).
        embeddings: one vector per record.
        methods: ranking methods to score (local ones need ``matcher``).
        matcher: local matcher of two record indices.
        calibrator: fitted calibration (probabilities; the ``calibrated`` method).
        max_queries: per species, a seeded sample of at most this many queries.
        seed: sampling seed.
        open_set: also run the leave-individuals-out simulation: BAKS/BAUS at ``threshold``
            on the first candidate's probability, per method.
        threshold: the "probably new" threshold; ``None``: the one that maximises the
            geometric mean on these queries (optimistic, reported as ``threshold_source``).

    Returns:
        ``{"per_species": {species: {method: metrics}}, "methods": {method: mean metrics}}``.
    """
    rng = np.random.default_rng(seed)
    per_species: dict[str, dict[str, Any]] = {}
    for name in sorted({r.species for r in records}):
        members = [i for i, r in enumerate(records) if r.species == name]
        eligible = honest_queries(
            [records[i].class_key for i in members], [records[i].encounter_key for i in members]
        )
        queries = [members[i] for i in eligible]
        if max_queries is not None and len(queries) > max_queries:
            queries = sorted(rng.choice(queries, size=max_queries, replace=False).tolist())
        shortlists = record_shortlists(records, embeddings, queries, matcher)
        stats = methods_compare(shortlists, methods, calibrator)
        if open_set:
            unknown = record_shortlists(
                records, embeddings, queries, matcher, exclude_individual=True
            )
            for method in methods:
                known_ranked = [
                    (s.truth, rank(s.candidates, method, calibrator)) for s in shortlists
                ]
                unknown_ranked = [
                    (s.truth, rank(s.candidates, method, calibrator)) for s in unknown
                ]
                stats[method]["open_set"] = (
                    threshold_select(known_ranked, unknown_ranked) | {"threshold_source": "best"}
                    if threshold is None
                    else open_set_metrics(known_ranked, unknown_ranked, threshold)
                    | {"threshold_source": "given"}
                )
        per_species[name] = stats
    means = (
        {
            method: {
                key: float(np.mean([s[method][key] for s in per_species.values()]))
                for key in ("top1", "top5", "mAP")
                if all(s[method][key] is not None for s in per_species.values())
            }
            for method in methods
        }
        if per_species
        else {}
    )
    for method in means:
        means[method]["n_queries"] = int(sum(s[method]["n_queries"] for s in per_species.values()))
    return {"per_species": per_species, "methods": means}
