"""Choosing the ranking method a species adopts, on shortlists of the evaluation core.

Each method is scored by the honest leave-one-out top-1 of :mod:`reid.evaluation`; the
calibrated fusion is cross-fitted by encounter so its score is not fitted on its own queries.
A fusion is adopted only when it is at least as good as the best single method, and a fitted
calibration only when more of each score means more likely the same individual.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

from reid.evaluation import QueryShortlist, methods_compare, ranking_metrics
from reid.fusion import FusionCalibrator
from reid.ranking import CALIBRATED, EMBEDDING, FUSED, LOCAL, Candidate, rank

logger = logging.getLogger(__name__)

SINGLE_METHODS = (EMBEDDING, LOCAL)
CALIBRATION_FOLDS = 5


def method_select(
    shortlists: Sequence[QueryShortlist],
    encounter_of: Mapping[Hashable, Hashable],
    folds: int = CALIBRATION_FOLDS,
) -> dict[str, Any]:
    """Fit the fusion calibration and choose the ranking method that is adopted.

    Every method is scored by honest leave-one-out top-1 on the same shortlists. The
    calibrated fusion is scored cross-fitted: queries are split into ``folds`` by encounter,
    and each fold is ranked with a calibration fitted on pairs from the other folds whose
    gallery photo is not in the fold's encounters either (sighting-disjoint). A fusion (the
    hand-set one or the fitted one) is adopted only when its top-1 is at least that of the
    best single method; otherwise the best single method ranks. A fitted calibration with a
    weight that is not positive (a higher cosine or more inliers meaning *less* likely the
    same individual) is refused and logged, whatever its top-1: it neither ranks nor gives
    probabilities, and the guard chooses among the other methods.

    Args:
        shortlists: queries with local evidence (``inliers``) on every candidate.
        encounter_of: gallery photo → its encounter.
        folds: cross-fitting folds.

    Returns:
        ``method`` (adopted), ``reason``, ``top1`` and ``metrics`` per method, ``calibrator``
        (fitted on all pairs; ``None`` when the pairs lack one class or it was refused),
        ``calibration_refused`` (why, or ``None``), ``pairs``, ``same_pairs``.
    """
    metrics = methods_compare(shortlists, (EMBEDDING, LOCAL, FUSED))
    calibrator = _calibrator_fit(shortlists, encounter_of, exclude=set())
    refused = None
    if calibrator is not None and calibrator.wrong_sign_scores():
        refused = (
            "refused calibration: its weight on "
            + " and ".join(calibrator.wrong_sign_scores())
            + " is not positive (more evidence would mean less likely the same individual)"
        )
        logger.warning("%s; the fit was %s", refused, calibrator.to_dict())
        calibrator = None
    cross_fitted = _cross_fitted_rankings(shortlists, encounter_of, folds)
    if calibrator is not None and cross_fitted is not None:
        metrics[CALIBRATED] = ranking_metrics(cross_fitted)
    top1 = {method: m["top1"] for method, m in metrics.items() if m["top1"] is not None}
    pairs = [(c.individual_id == s.truth) for s in shortlists for c in s.candidates]
    result: dict[str, Any] = {
        "metrics": metrics,
        "top1": top1,
        "calibrator": calibrator,
        "calibration_refused": refused,
        "pairs": len(pairs),
        "same_pairs": int(sum(pairs)),
    }
    if not top1:
        result.update(method=FUSED, reason="no query to evaluate: the hand-set fusion ranks")
        return result
    best_single = max(SINGLE_METHODS, key=lambda m: top1.get(m, -1.0))  # ties keep embedding
    fusions = [m for m in (CALIBRATED, FUSED) if m in top1 and top1[m] >= top1[best_single]]
    if fusions:
        chosen = max(fusions, key=lambda m: top1[m])  # ties keep the fitted calibration
        result.update(
            method=chosen,
            reason=(
                f"{chosen} top-1 {top1[chosen]:.3f} >= best single method {best_single} "
                f"{top1[best_single]:.3f}"
            ),
        )
    else:
        fused_best = max((m for m in (CALIBRATED, FUSED) if m in top1), key=lambda m: top1[m])
        result.update(
            method=best_single,
            reason=(
                f"refused fusion: {fused_best} top-1 {top1[fused_best]:.3f} < {best_single} "
                f"{top1[best_single]:.3f}, so {best_single} ranks"
            ),
        )
    if refused:
        result["reason"] += f"; {refused}"
    return result


def _calibration_pairs(
    shortlists: Iterable[QueryShortlist],
    encounter_of: Mapping[Hashable, Hashable],
    exclude: set,
) -> tuple[list[float], list[int], list[bool]]:
    cosines, inliers, same = [], [], []
    for s in shortlists:
        if s.encounter in exclude:
            continue
        for c in s.candidates:
            if encounter_of.get(c.annotation_id) in exclude:
                continue
            cosines.append(c.cosine)
            inliers.append(c.inliers or 0)
            same.append(c.individual_id == s.truth)
    return cosines, inliers, same


def _calibrator_fit(
    shortlists: Iterable[QueryShortlist],
    encounter_of: Mapping[Hashable, Hashable],
    exclude: set,
) -> FusionCalibrator | None:
    cosines, inliers, same = _calibration_pairs(shortlists, encounter_of, exclude)
    if not any(same) or all(same):
        return None
    return FusionCalibrator.default().fit(cosines, inliers, same)


def _cross_fitted_rankings(
    shortlists: Sequence[QueryShortlist],
    encounter_of: Mapping[Hashable, Hashable],
    folds: int,
) -> list[tuple[Hashable, list[Candidate]]] | None:
    encounters = sorted({s.encounter for s in shortlists}, key=str)
    fold_of = {e: i % folds for i, e in enumerate(encounters)}
    rankings = []
    for fold in range(folds):
        held_out = {e for e, f in fold_of.items() if f == fold}
        members = [s for s in shortlists if s.encounter in held_out]
        if not members:
            continue
        calibrator = _calibrator_fit(shortlists, encounter_of, exclude=held_out)
        if calibrator is None:
            return None
        rankings.extend((s.truth, rank(s.candidates, CALIBRATED, calibrator)) for s in members)
    return rankings
