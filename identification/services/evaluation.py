"""Identifying a loose photo, and honest evaluation and calibration of a species' ranking.

Evaluation and calibration rank each confirmed photo exactly as the app ranks a new animal
(``candidates_shortlist`` and ``reid.ranking.rank``), with the protocol and metrics of the
one evaluation core, ``reid.evaluation``: the query's own encounter (sighting) is never in
the gallery, and a query counts only when its individual was seen in another encounter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from django.utils import timezone
from PIL import Image as PILImage

from catalogue.models import Annotation, Individual, Species
from identification.models import Embedding, SpeciesModel
from identification.services.matching import (
    candidates_score,
    candidates_shortlist,
    gallery_keypoints,
    species_calibrator,
    species_identifications_refresh,
)
from identification.services.models import model_version_embedder, species_model_setting
from reid.evaluation import (
    QueryShortlist,
    honest_queries,
    open_set_metrics,
    shortlist_metrics,
    threshold_cross_validate,
)
from reid.fusion import FusionCalibrator
from reid.method_selection import method_select
from reid.ranking import NEEDS_LOCAL, Candidate, rank
from wildweb.errors import ServiceError

RANKING_METHODS = SpeciesModel.RankingMethod.values
PROTOCOL = "honest leave-one-out: the query's own encounter is never in the gallery"
# The "probably new" threshold's BAKS and BAUS: chosen on the other folds' individuals.
OPEN_SET_FOLDS = 5
OPEN_SET_STORED = ("BAKS", "BAUS", "geometric_mean", "n_known", "n_unknown", "folds")


def image_identify(
    *, image: PILImage.Image, species: Species, method: str | None = None, top: int = 10
) -> list[dict]:
    """Rank the species' known individuals for a photo that is not in the catalogue."""
    from reid.local_features import extract

    setting = species_model_setting(species=species)
    image = image.convert("RGB")
    vector = model_version_embedder(version=setting.model_version).embed_images([image])[0]
    scored = candidates_score(
        species_id=species.pk,
        setting=setting,
        vector=vector,
        query_keypoints=lambda: extract(image, method=setting.local_method),
        method=method,
    )
    return _described(scored[:top])


@dataclass
class _Confirmed:
    """The species' identified photos under its model version."""

    vectors: dict[int, list]
    individual_of: dict[int, int]
    encounter_of: dict[int, int]

    @classmethod
    def load(cls, setting: SpeciesModel) -> _Confirmed:
        vectors = dict(
            Embedding.objects.filter(
                species=setting.species,
                model_version=setting.model_version,
                annotation__individual__isnull=False,
            ).values_list("annotation_id", "vector")
        )
        rows = Annotation.objects.filter(pk__in=vectors).values_list(
            "pk", "individual_id", "image__encounter_id"
        )
        return cls(vectors, {a: i for a, i, _ in rows}, {a: e for a, _, e in rows})

    def queries(self, limit: int | None) -> list[int]:
        """Honest queries, or a seeded sample of ``limit`` of them."""
        ids = sorted(self.individual_of)
        eligible = [
            ids[i]
            for i in honest_queries(
                [self.individual_of[a] for a in ids], [self.encounter_of[a] for a in ids]
            )
        ]
        if limit is not None and len(eligible) > limit:
            eligible = sorted(np.random.default_rng(0).choice(eligible, limit, replace=False))
        return [int(a) for a in eligible]

    def excluded(self, query: int, *, individual: bool = False) -> set[int]:
        """The query's encounter (and, for the open-set simulation, its individual)."""
        return {
            a
            for a, e in self.encounter_of.items()
            if e == self.encounter_of[query]
            or (individual and self.individual_of[a] == self.individual_of[query])
        }


def _shortlists(
    *,
    setting: SpeciesModel,
    confirmed: _Confirmed,
    queries: list[int],
    with_local: bool,
    open_set: bool = False,
) -> tuple[list[QueryShortlist], list[QueryShortlist]]:
    """Each query's shortlist as the app builds it, and (``open_set``) the same query with
    its individual removed from the gallery."""
    known, unknown = [], []
    for query in queries:
        cache: dict = {}

        def build(excluded: set[int], query: int = query, cache: dict = cache) -> QueryShortlist:
            candidates = candidates_shortlist(
                species_id=setting.species_id,
                setting=setting,
                vector=np.asarray(confirmed.vectors[query], dtype=np.float32),
                query_keypoints=(
                    lambda: gallery_keypoints(annotation_id=query, method=setting.local_method)
                )
                if with_local
                else None,
                exclude_annotation_ids=excluded,
                match_cache=cache,
            )
            return QueryShortlist(
                query, confirmed.individual_of[query], confirmed.encounter_of[query], candidates
            )

        known.append(build(confirmed.excluded(query)))
        if open_set:
            unknown.append(build(confirmed.excluded(query, individual=True)))
    return known, unknown


def species_evaluate(
    *,
    species: Species,
    method: str | None = None,
    limit: int | None = None,
    open_set: bool = False,
) -> dict:
    """Honest leave-one-out of the species' ranking over its identified photos.

    Args:
        species: The species.
        method: A ranking method; default the species' own (what the app ranks with).
        limit: At most this many queries (a seeded sample).
        open_set: Also rank each query with its individual removed (a new animal) and report
            BAKS, BAUS and their geometric mean at the species' "probably new" threshold.

    Returns:
        ``top1, top5, mAP`` (mAP is the mean of 1/rank, 0 outside the shortlist), their
        standard errors and ``n_queries``; ``sighting_top1``, ``sighting_top1_se`` and
        ``n_sightings``: each sighting's photos of one individual ranked together, as the
        review page ranks them; with ``open_set``, ``open_set``.
    """
    setting = species_model_setting(species=species)
    method = method or setting.ranking_method
    confirmed = _Confirmed.load(setting)
    shortlists, unknown = _shortlists(
        setting=setting,
        confirmed=confirmed,
        queries=confirmed.queries(limit),
        with_local=method in NEEDS_LOCAL,
        open_set=open_set,
    )
    calibrator = species_calibrator(setting=setting)
    metrics = shortlist_metrics(shortlists, method, calibrator)
    report = {
        "species": species.name,
        "method": method,
        "local_method": setting.local_method,
        "model_version": setting.model_version.name,
        **metrics,
        "protocol": PROTOCOL,
    }
    if open_set:
        report["open_set"] = open_set_metrics(
            [(s.truth, rank(s.candidates, method, calibrator)) for s in shortlists],
            [(s.truth, rank(s.candidates, method, calibrator)) for s in unknown],
            setting.probably_new_threshold,
        )
    return report


def _described(scored: list[Candidate]) -> list[dict]:
    individuals = Individual.objects.in_bulk([s.individual_id for s in scored])
    return [
        {
            "rank": rank,
            "individual_id": s.individual_id,
            "code": individuals[s.individual_id].code,
            "name": individuals[s.individual_id].name,
            "score": round(s.score, 4),
            "fused_score": round(s.probability, 4),
            "embedding_score": round(s.cosine, 4),
            "inlier_count": s.inliers,
        }
        for rank, s in enumerate(scored, start=1)
    ]


def species_calibrate(
    *, species: Species, queries: int = 200, local_method: str | None = None
) -> dict:
    """Fit the species' calibration, choose its ranking method and "probably new" threshold.

    Every confirmed photo (a seeded sample of ``queries``) is ranked as the app ranks it,
    honestly. Each shortlisted candidate is a labelled pair (cosine, inliers, same or not).
    ``reid.method_selection.method_select`` fits the per-score calibration (refused when a
    weight has the wrong sign; the hand-set one then gives the probabilities) and adopts a
    fusion only when its leave-one-out top-1 is at least the best single method's; otherwise
    the best single method ranks. The choice, with its honest top-1 and standard error, is
    stored with when it was made (``method_choice``, ``method_chosen_at``). The threshold
    maximises the geometric mean of BAKS and BAUS, with each query ranked again with its
    individual removed (leave-individuals-out); the stored threshold is chosen on all the
    individuals, and the BAKS, BAUS and geometric mean reported and stored with the choice
    (``method_choice["open_set"]``) are held-out: the individuals are dealt into
    ``OPEN_SET_FOLDS`` seeded folds, and each fold is judged at a threshold chosen on the
    others (``reid.evaluation.threshold_cross_validate``; not measured with one individual).
    Everything is stored for the species' current model version and local method only, and
    the species' undecided animals are ranked again under it (on the ``bulk`` queue). Admins
    may run it (``manage.py calibrate``); the workers run it by themselves
    (:mod:`identification.services.calibration`).

    Args:
        species: The species.
        queries: At most this many queries (a seeded sample).
        local_method: Switch the species to this local method first (``sift``/``xfeat``);
            gallery keypoints of a new method are extracted as they are first needed.

    Raises:
        ServiceError: Too few identified photos to have both same and different pairs.
    """
    setting = species_model_setting(species=species)
    if local_method and local_method != setting.local_method:
        if local_method not in SpeciesModel.LocalMethod.values:
            raise ServiceError(f"Unknown local method {local_method!r}.")
        setting.local_method = local_method  # saved below, with the fit (or not at all)
    confirmed = _Confirmed.load(setting)
    known, unknown = _shortlists(
        setting=setting,
        confirmed=confirmed,
        queries=confirmed.queries(queries),
        with_local=True,
        open_set=True,
    )
    selection = method_select(known, confirmed.encounter_of)
    # None also when the fit was refused (a wrong sign): the hand-set calibration applies.
    calibrator = selection["calibrator"]
    if calibrator is None and not selection["calibration_refused"]:
        raise ServiceError(
            f"{species}: too few identified photos to calibrate (need several individuals "
            "seen in at least two sightings each)."
        )
    method = selection["method"]
    open_set = threshold_cross_validate(
        [(s.truth, rank(s.candidates, method, calibrator)) for s in known],
        [(s.truth, rank(s.candidates, method, calibrator)) for s in unknown],
        folds=OPEN_SET_FOLDS,
    )
    _choice_store(setting=setting, selection=selection, calibrator=calibrator, open_set=open_set)
    # The animals waiting for review keep the score the old ranking stored; re-rank them so a
    # sighting's photos are ordered, combined and flagged by the ranking adopted now.
    species_identifications_refresh(species_id=species.pk)
    return {
        "species": species.name,
        "model_version": setting.model_version.name,
        "local_method": setting.local_method,
        "protocol": PROTOCOL,
        "pairs": selection["pairs"],
        "same_pairs": selection["same_pairs"],
        "calibration": setting.calibration,
        "top1": selection["top1"],
        "top1_se": selection["metrics"][method]["top1_se"],
        "ranking_method": method,
        "decision": selection["reason"],
        "open_set": open_set,
    }


def _choice_store(
    *,
    setting: SpeciesModel,
    selection: dict,
    calibrator: FusionCalibrator | None,
    open_set: dict,
) -> None:
    """Store the chosen method, its calibration and threshold, and what the choice measured
    (the threshold's held-out BAKS and BAUS among it)."""
    method = selection["method"]
    chosen = selection["metrics"][method]
    setting.ranking_method = method
    setting.calibration = (
        {**calibrator.to_dict(), "local_method": setting.local_method} if calibrator else {}
    )
    setting.calibration_version = setting.model_version
    setting.new_individual_threshold = open_set["threshold"]
    setting.method_choice = {
        "method": method,
        "top1": chosen["top1"],
        "top1_se": chosen["top1_se"],
        "n_queries": chosen["n_queries"],
        "top1_by_method": selection["top1"],
        "reason": selection["reason"],
        "local_method": setting.local_method,
        "model_version": setting.model_version.name,
        "open_set": {key: open_set[key] for key in OPEN_SET_STORED},
    }
    setting.method_chosen_at = timezone.now()
    setting.save(
        update_fields=[
            "ranking_method",
            "calibration",
            "calibration_version",
            "new_individual_threshold",
            "local_method",
            "method_choice",
            "method_chosen_at",
        ]
    )
