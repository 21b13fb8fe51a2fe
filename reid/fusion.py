"""Calibrate each score into P(same individual), then combine the probabilities.

As in WildFusion (Cermak et al. 2024), every score is calibrated on its own: a one-feature
logistic regression on the embedding cosine, and one on ``log1p(inliers)`` of the local
matcher. The fused probability is the mean of the calibrated probabilities of the scores a
pair has. Each calibration is two floats, so the app stores a fit as JSON.

Logistic rather than isotonic: it stays monotone and smooth with the few dozen positive pairs
a new species has, and never turns a score's order into ties.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Hand-set calibration used until one is fitted: P(same) = 0.5 at cosine 0.8, and at 10
# verified inliers. It only turns scores into probabilities for the "probably new" flag; the
# hand-set *ranking* is reid.ranking's weighted sum.
DEFAULT_COSINE = (12.0, -9.6)
DEFAULT_LOCAL = (2.0, -2.0 * float(np.log1p(10.0)))


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(logits, -50.0, 50.0)))


def logistic_fit(
    feature: Any, same: Any, l2: float = 1e-3, iterations: int = 50
) -> tuple[float, float]:
    """Fit ``P(same) = sigmoid(weight * feature + bias)`` by Newton's method.

    Args:
        feature: one score per pair.
        same: 1/True when the pair shows the same individual.
        l2: ridge penalty on the weight (keeps separable data finite).
        iterations: maximal Newton steps.

    Returns:
        ``(weight, bias)``.

    Raises:
        ValueError: when the labels are all equal or the lengths differ.
    """
    x = np.asarray(feature, dtype=np.float64).reshape(-1)
    labels = np.asarray(same, dtype=np.float64).reshape(-1)
    if len(labels) != len(x):
        raise ValueError("same must have one label per pair")
    if len(labels) == 0 or labels.min() == labels.max():
        raise ValueError("need both same and different pairs to fit")
    design = np.stack([x, np.ones_like(x)], axis=1)
    weights = np.zeros(2)
    penalty = np.diag([l2, 0.0]) * len(labels)
    for _ in range(iterations):
        probabilities = _sigmoid(design @ weights)
        gradient = design.T @ (probabilities - labels) + penalty @ weights
        curvature = probabilities * (1.0 - probabilities)
        hessian = (design * curvature[:, None]).T @ design + penalty + 1e-9 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        weights -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return float(weights[0]), float(weights[1])


class FusionCalibrator:
    """Per-score logistic calibrations and their mean, P(same | cosine, inliers).

    Args:
        cosine: ``(weight, bias)`` on the cosine.
        local: ``(weight, bias)`` on ``log1p(inliers)``.
        fitted_pairs: how many labelled pairs the calibration was fitted on (0: hand-set).
    """

    def __init__(
        self, cosine: tuple[float, float], local: tuple[float, float], fitted_pairs: int = 0
    ) -> None:
        self.cosine = (float(cosine[0]), float(cosine[1]))
        self.local = (float(local[0]), float(local[1]))
        self.fitted_pairs = int(fitted_pairs)

    @classmethod
    def default(cls) -> FusionCalibrator:
        """The hand-set calibration, for when no labelled pairs exist yet."""
        return cls(DEFAULT_COSINE, DEFAULT_LOCAL, 0)

    @property
    def is_fitted(self) -> bool:
        return self.fitted_pairs > 0

    def wrong_sign_scores(self) -> list[str]:
        """The scores whose weight is not positive: with them a higher cosine or more verified
        inliers would make the same individual *less* likely, which no matcher means. Such a
        fit learned an accident of its few pairs and must not rank.

        Returns:
            ``"cosine"`` and/or ``"inliers"``; empty when both weights are positive.
        """
        return [
            name
            for name, (weight, _) in (("cosine", self.cosine), ("inliers", self.local))
            if weight <= 0
        ]

    def fit(self, cosine: Any, inliers: Any, same: Any) -> FusionCalibrator:
        """Fit both calibrations on labelled pairs (in place) and return ``self``.

        Args:
            cosine: embedding cosine per pair.
            inliers: verified inlier count per pair.
            same: 1/True when the pair shows the same individual.

        Returns:
            ``self``.
        """
        self.cosine = logistic_fit(np.asarray(cosine, dtype=np.float64), same)
        self.local = logistic_fit(_log_inliers(inliers), same)
        self.fitted_pairs = len(np.asarray(same).reshape(-1))
        return self

    def probability_cosine(self, cosine: Any) -> np.ndarray:
        """P(same) from the cosine alone."""
        weight, bias = self.cosine
        return _sigmoid(weight * np.asarray(cosine, dtype=np.float64) + bias)

    def probability_local(self, inliers: Any) -> np.ndarray:
        """P(same) from the inlier count alone."""
        weight, bias = self.local
        return _sigmoid(weight * _log_inliers(inliers) + bias)

    def predict(self, cosine: Any, inliers: Any | None = None) -> np.ndarray:
        """P(same individual) per pair: the mean of the per-score probabilities.

        Args:
            cosine: embedding cosine per pair.
            inliers: inlier count per pair, or ``None`` when no keypoints were matched
                (then the cosine's probability alone).

        Returns:
            Probabilities, float64 array.
        """
        from_cosine = self.probability_cosine(cosine).reshape(-1)
        if inliers is None:
            return from_cosine
        from_local = self.probability_local(inliers).reshape(-1)
        if from_local.shape != from_cosine.shape:
            raise ValueError("cosine and inliers must have the same length")
        return (from_cosine + from_local) / 2.0

    def to_dict(self) -> dict[str, float]:
        """Serialise to a JSON-friendly dict of numbers."""
        return {
            "cosine_weight": self.cosine[0],
            "cosine_bias": self.cosine[1],
            "log_inliers_weight": self.local[0],
            "log_inliers_bias": self.local[1],
            "fitted_pairs": float(self.fitted_pairs),
        }

    @classmethod
    def from_dict(cls, data: dict[str, float]) -> FusionCalibrator:
        """Inverse of :meth:`to_dict`."""
        return cls(
            (data["cosine_weight"], data["cosine_bias"]),
            (data["log_inliers_weight"], data["log_inliers_bias"]),
            int(data.get("fitted_pairs", 0)),
        )


def _log_inliers(inliers: Any) -> np.ndarray:
    return np.log1p(np.maximum(np.asarray(inliers, dtype=np.float64), 0.0))
