"""Re-ID quality per species: ImageNet zero-shot embeddings vs SIFT inliers vs fused.

For each species a disjoint-identity split is made (seeded). The fusion calibrator is fitted
on pairs from the *train* identities; every method is scored by leave-one-out on the *test*
identities only, so no identity used for calibration is evaluated.

    .venv/bin/python benchmarks/reid/quality.py --identities 20 --max-per-identity 6
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from reid.data import load_records, subset_records
from reid.evaluation import extract_all, inlier_matrix
from reid.fusion import FusionCalibrator
from reid.inference import load_model
from reid.metrics import cosine_matrix, leave_one_out_from_scores
from reid.splits import disjoint_identity_split

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
DATASETS = ("fs48_fish", "chimp_faces_demo", "dogfacenet", "holstein2025_cowfaces")


def pair_scores(records: list, embedder) -> tuple[np.ndarray, np.ndarray]:
    """Cosine and inlier matrices of all pairs of ``records``."""
    vectors = embedder.embed_records(records)
    keypoints = extract_all(records)
    return cosine_matrix(vectors, vectors).astype(np.float64), inlier_matrix(
        keypoints, keypoints, same_set=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--identities", type=int, default=20, help="per species, before split")
    parser.add_argument("--max-per-identity", type=int, default=6)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS))
    args = parser.parse_args()
    embedder = load_model("imagenet", device="cpu", image_size=args.image_size)
    rows = {}
    for name in args.datasets:
        started = time.perf_counter()
        records = subset_records(load_records(SHARED / name), identities=args.identities,
                                 max_per_identity=args.max_per_identity, min_per_identity=2,
                                 seed=args.seed)
        split = disjoint_identity_split(records, test_fraction=0.5, seed=args.seed)
        train_cos, train_inl = pair_scores(split.train, embedder)
        upper = np.triu_indices(len(split.train), k=1)
        same = np.array([[a.class_key == b.class_key for b in split.train]
                         for a in split.train])[upper]
        calibrator = FusionCalibrator.default().fit(train_cos[upper], train_inl[upper], same)
        test_cos, test_inl = pair_scores(split.test, embedder)
        ids = [r.class_key for r in split.test]
        scores = {
            "embedding": test_cos,
            "sift": test_inl,
            "fused_default": FusionCalibrator.default().predict(
                test_cos.ravel(), test_inl.ravel()).reshape(test_cos.shape),
            "fused_fitted": calibrator.predict(test_cos.ravel(), test_inl.ravel()).reshape(
                test_cos.shape),
        }
        result = {"n_test_images": len(split.test),
                  "n_test_identities": len(set(ids)),
                  "calibration": calibrator.to_dict()}
        for method, matrix in scores.items():
            stats = leave_one_out_from_scores(matrix, ids)
            result[method] = {k: round(stats[k], 4) for k in ("top1", "top5", "mAP")}
            result[method]["individual_top1"] = round(stats["individual"]["top1"], 4)
        result["seconds"] = round(time.perf_counter() - started, 1)
        rows[name] = result
        print(json.dumps({name: result}), flush=True)


if __name__ == "__main__":
    main()
