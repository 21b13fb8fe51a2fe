"""Fuse embedding similarity and local-feature inliers into P(same individual).

A two-feature logistic regression on ``[cosine, log1p(inliers)]``, fitted on labelled pairs
by Newton's method (L2-regularised). Its parameters are three floats, so the app can store a
calibration as JSON.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Hand-set defaults used until a calibration is fitted on labelled pairs: 50% at cosine 0.8
# with no inliers, 50% at cosine 0.6 with ~6 inliers, and confident when both agree.
DEFAULT_COEFFICIENTS = (12.0, 1.2)
DEFAULT_INTERCEPT = -9.6


def _features(cosine: Any, inliers: Any) -> np.ndarray:
    cosine_array = np.asarray(cosine, dtype=np.float64).reshape(-1)
    inlier_array = np.maximum(np.asarray(inliers, dtype=np.float64).reshape(-1), 0.0)
    if cosine_array.shape != inlier_array.shape:
        raise ValueError("cosine and inliers must have the same length")
    return np.stack([cosine_array, np.log1p(inlier_array)], axis=1)


class FusionCalibrator:
    """Logistic model of P(same individual | cosine, inliers).

    Args:
        coefficients: weights of cosine and ``log1p(inliers)``.
        intercept: bias.
        fitted_pairs: how many labelled pairs the calibration was fitted on (0: default).
    """

    def __init__(
        self, coefficients: tuple[float, float], intercept: float, fitted_pairs: int = 0
    ) -> None:
        self.coefficients = (float(coefficients[0]), float(coefficients[1]))
        self.intercept = float(intercept)
        self.fitted_pairs = int(fitted_pairs)

    @classmethod
    def default(cls) -> FusionCalibrator:
        """A sensible calibration for when no labelled pairs exist yet (hand-set)."""
        return cls(DEFAULT_COEFFICIENTS, DEFAULT_INTERCEPT, 0)

    def fit(
        self, cosine: Any, inliers: Any, same: Any, l2: float = 1e-3, iterations: int = 50
    ) -> FusionCalibrator:
        """Fit on labelled pairs (in place) and return ``self``.

        Args:
            cosine: embedding cosine per pair.
            inliers: inlier count per pair.
            same: 1/True when the pair shows the same individual.
            l2: ridge penalty on the two coefficients (keeps separable data finite).
            iterations: maximal Newton steps.

        Returns:
            ``self``.
        """
        features = _features(cosine, inliers)
        labels = np.asarray(same, dtype=np.float64).reshape(-1)
        if len(labels) != len(features):
            raise ValueError("same must have one label per pair")
        if labels.min() == labels.max():
            raise ValueError("need both same and different pairs to fit")
        design = np.concatenate([features, np.ones((len(features), 1))], axis=1)
        weights = np.zeros(3)
        penalty = np.diag([l2, l2, 0.0]) * len(labels)
        for _ in range(iterations):
            probabilities = 1.0 / (1.0 + np.exp(-(design @ weights)))
            gradient = design.T @ (probabilities - labels) + penalty @ weights
            curvature = probabilities * (1.0 - probabilities)
            hessian = (design * curvature[:, None]).T @ design + penalty + 1e-9 * np.eye(3)
            step = np.linalg.solve(hessian, gradient)
            weights -= step
            if np.max(np.abs(step)) < 1e-8:
                break
        self.coefficients = (float(weights[0]), float(weights[1]))
        self.intercept = float(weights[2])
        self.fitted_pairs = len(labels)
        return self

    def predict(self, cosine: Any, inliers: Any) -> np.ndarray:
        """P(same individual) per pair.

        Args:
            cosine: embedding cosine per pair.
            inliers: inlier count per pair.

        Returns:
            Probabilities, float64 array.
        """
        features = _features(cosine, inliers)
        logits = features @ np.asarray(self.coefficients) + self.intercept
        return 1.0 / (1.0 + np.exp(-logits))

    def to_dict(self) -> dict[str, float]:
        """Serialise to a JSON-friendly dict of numbers."""
        return {
            "cosine_weight": self.coefficients[0],
            "log_inliers_weight": self.coefficients[1],
            "intercept": self.intercept,
            "fitted_pairs": float(self.fitted_pairs),
        }

    @classmethod
    def from_dict(cls, data: dict[str, float]) -> FusionCalibrator:
        """Inverse of :meth:`to_dict`."""
        return cls(
            (data["cosine_weight"], data["log_inliers_weight"]),
            data["intercept"],
            int(data.get("fitted_pairs", 0)),
        )
