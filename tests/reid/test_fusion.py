"""Fusion calibration of cosine and inliers."""

from __future__ import annotations

import json

import numpy as np

from reid.fusion import FusionCalibrator


def test_fit_separates_pairs_and_round_trips_through_json() -> None:
    rng = np.random.default_rng(0)
    same = rng.random(400) < 0.3
    cosine = np.where(same, 0.8, 0.55) + rng.normal(scale=0.08, size=400)
    inliers = np.where(same, rng.poisson(25, 400), rng.poisson(3, 400))
    calibrator = FusionCalibrator.default().fit(cosine, inliers, same)
    probabilities = calibrator.predict(cosine, inliers)
    assert np.mean((probabilities > 0.5) == same) > 0.95
    assert calibrator.cosine[0] > 0 and calibrator.local[0] > 0
    assert calibrator.is_fitted and calibrator.fitted_pairs == 400
    restored = FusionCalibrator.from_dict(json.loads(json.dumps(calibrator.to_dict())))
    np.testing.assert_allclose(restored.predict(cosine, inliers), probabilities)


def test_default_calibration_increases_with_both_signals() -> None:
    calibrator = FusionCalibrator.default()
    base = calibrator.predict([0.6], [2])[0]
    assert calibrator.predict([0.8], [2])[0] > base
    assert calibrator.predict([0.6], [40])[0] > base
    assert 0.0 < base < 1.0


def test_fused_probability_is_the_mean_of_the_calibrated_scores() -> None:
    calibrator = FusionCalibrator((10.0, -7.0), (1.5, -3.0), fitted_pairs=10)
    cosine, inliers = np.array([0.5, 0.9]), np.array([3, 30])
    from_cosine = 1 / (1 + np.exp(-(10.0 * cosine - 7.0)))
    from_local = 1 / (1 + np.exp(-(1.5 * np.log1p(inliers) - 3.0)))
    np.testing.assert_allclose(calibrator.predict(cosine, inliers), (from_cosine + from_local) / 2)
    np.testing.assert_allclose(calibrator.predict(cosine), from_cosine)


def test_wrong_sign_scores_names_each_score_whose_weight_is_not_positive() -> None:
    assert FusionCalibrator.default().wrong_sign_scores() == []
    assert FusionCalibrator((-3.0, 1.0), (1.5, -3.0), 10).wrong_sign_scores() == ["cosine"]
    assert FusionCalibrator((3.0, 1.0), (0.0, -3.0), 10).wrong_sign_scores() == ["inliers"]
    rng = np.random.default_rng(0)
    same = rng.random(200) < 0.3
    cosine = np.where(same, 0.8, 0.6) + rng.normal(scale=0.05, size=200)
    inliers = np.where(same, rng.poisson(2, 200), rng.poisson(30, 200))  # backwards
    fitted = FusionCalibrator.default().fit(cosine, inliers, same)
    assert fitted.wrong_sign_scores() == ["inliers"]
