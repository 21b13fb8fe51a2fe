"""Cheaper local matching per upload, side by side with top-1 under the honest protocol.

For each shared species (galleries capped as ``benchmarks/reid/ranking.py`` caps them): the
zero-shot embedding (ImageNet lite0 + GeM, the app's version 0); a seeded sample of honest
queries (the query's encounter is never in the gallery, its individual has another
encounter); the app's shortlist (50 neighbours → 10 individuals → SIFT on their best photos)
under each matching variant; top-1 of ``local`` and ``fused`` with standard errors.

A variant is a keypoint budget and a number of photos matched per shortlisted individual.
Cost per upload is what ``growth.py`` calls the ``local`` stage: SIFT of the query, then each
matched gallery photo's keypoints read from the bytes the app stores and matched. It is timed
on the same queries for every variant, interleaved query by query, so machine load falls on
all of them alike; ratios are to the first variant.

    nice -n 5 .venv/bin/python benchmarks/identification/matching_cost.py --queries 200 \
        --timed 40 --variants before current kp500 photos1 --out /tmp/matching-cost4.json
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from reid.data import load_image
from reid.evaluation import PairMatcher, honest_queries, methods_compare, record_shortlists
from reid.inference import load_model
from reid.local_features import Keypoints, Match, extract, match
from reid.ranking import FUSED, LOCAL

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reid"))
# The same shared species, gallery caps and cached vectors as ranking.py's.
from ranking import DATASETS, species_records, species_vectors  # noqa: E402

# name: (keypoint budget of the query, of each gallery photo, photos matched per individual)
VARIANTS = {
    # as "current", matched as before issue 22: OpenCV's brute force, gallery blobs as .npz
    "before": (1000, 1000, 2),
    "current": (1000, 1000, 2),
    "kp500": (500, 500, 2),
    "kp350": (350, 350, 2),
    "kp250": (250, 250, 2),
    "photos1": (1000, 1000, 1),
    "kp350-photos1": (350, 350, 1),
    "query350": (350, 1000, 2),
    "query250": (250, 1000, 2),
    "query250-kp500": (250, 500, 2),
    "query350-kp500": (350, 500, 2),
}


def match_before(a: Keypoints, b: Keypoints, ratio: float = 0.8) -> Match:
    """SIFT matching as ``reid.local_features.match`` did it before issue 22."""
    import cv2

    from reid.local_features import _verified

    if len(a) < 2 or len(b) < 2:
        return Match(0, np.zeros((0, 4), np.float32), 0)
    knn = cv2.BFMatcher(cv2.NORM_L2).knnMatch(a.descriptors, b.descriptors, k=2)
    good = [p[0] for p in knn if len(p) == 2 and p[0].distance < ratio * p[1].distance]
    source = a.points[[m.queryIdx for m in good]].reshape(-1, 2)
    target = b.points[[m.trainIdx for m in good]].reshape(-1, 2)
    return _verified(source, target, b.image_size, None, 6)


def _matcher_of(variant: str):  # noqa: ANN202
    return match_before if variant == "before" else match


class BudgetMatcher(PairMatcher):
    """A :class:`PairMatcher` whose keypoints are extracted with keypoint budgets, one for
    the query and one for gallery photos."""

    def __init__(self, records: list, variant: str) -> None:
        super().__init__(records, "sift")
        query_budget, gallery_budget, _ = VARIANTS[variant]
        self.budgets = {"query": query_budget, "gallery": gallery_budget}
        self.match = _matcher_of(variant)
        self._extracted: dict[tuple[str, int], Keypoints] = {}

    def side(self, role: str, index: int) -> Keypoints:
        if (role, index) not in self._extracted:
            image = load_image(self.records[index])
            found = extract(image, max_keypoints=self.budgets[role])
            self._extracted[role, index] = found
        return self._extracted[role, index]

    def __call__(self, query: int, gallery: int) -> Match:
        key = (query, gallery)
        if key not in self._matches:
            self._matches[key] = self.match(
                self.side("query", query), self.side("gallery", gallery)
            )
        return self._matches[key]


def _npz_bytes(keypoints: Keypoints) -> bytes:
    """A blob as ``Keypoints.to_bytes`` wrote it before issue 22 (``.npz``, uint8 rootSIFT)."""
    buffer = io.BytesIO()
    np.savez(
        buffer,
        points=keypoints.points,
        descriptors=np.round(np.clip(keypoints.descriptors, 0, 1) * 255).astype(np.uint8),
        method=np.array(keypoints.method),
        image_size=np.array(keypoints.image_size, dtype=np.int64),
    )
    return buffer.getvalue()


def _upload_costs(records: list, timed: dict[str, dict[int, list[int]]]) -> dict[str, list]:
    """Milliseconds of the ``local`` stage per timed query, for every variant, interleaved."""
    blobs = {
        name: {
            g: (_npz_bytes if name == "before" else Keypoints.to_bytes)(
                extract(load_image(records[g]), max_keypoints=VARIANTS[name][1])
            )
            for pairs in per_query.values()
            for g in pairs
        }
        for name, per_query in timed.items()
    }
    costs: dict[str, list] = {name: [] for name in timed}
    queries = next(iter(timed.values())).keys()
    for query in queries:
        image = load_image(records[query])
        for name, per_query in timed.items():
            started = time.perf_counter()
            keypoints = extract(image, max_keypoints=VARIANTS[name][0])
            for gallery in per_query[query]:
                _matcher_of(name)(keypoints, Keypoints.from_bytes(blobs[name][gallery]))
            costs[name].append((time.perf_counter() - started) * 1000)
    return costs


def _species_row(name: str, args: argparse.Namespace, embedder) -> dict:  # noqa: ANN001
    records = species_records(name, args.seed)
    vectors = species_vectors(name, records, args.cache, embedder)
    eligible = honest_queries([r.class_key for r in records], [r.encounter_key for r in records])
    rng = np.random.default_rng(args.seed)
    queries = sorted(
        rng.choice(eligible, size=min(args.queries, len(eligible)), replace=False).tolist()
    )
    row: dict = {"gallery_photos": len(records), "queries": len(queries), "variants": {}}
    timed: dict[str, dict[int, list[int]]] = {}
    for variant in args.variants:
        matcher = BudgetMatcher(records, variant)
        photos = VARIANTS[variant][2]
        shortlists = record_shortlists(
            records, vectors, queries, matcher, photos_per_candidate=photos
        )
        metrics = methods_compare(shortlists, (LOCAL, FUSED))
        pairs: dict[int, list[int]] = {}
        for query, gallery in matcher._matches:
            pairs.setdefault(query, []).append(gallery)
        timed[variant] = {q: pairs.get(q, []) for q in queries[: args.timed]}
        row["variants"][variant] = {
            method: {k: metrics[method][k] for k in ("top1", "top1_se", "n_queries")}
            for method in (LOCAL, FUSED)
        } | {
            "keypoints_mean": {
                role: round(
                    float(
                        np.mean([len(k) for (r, _), k in matcher._extracted.items() if r == role])
                    ),
                    1,
                )
                for role in ("query", "gallery")
            },
            "pairs_per_query": round(matcher.pairs_matched / len(queries), 2),
        }
    costs = _upload_costs(records, timed)
    first = args.variants[0]
    for variant, values in costs.items():
        row["variants"][variant]["local_ms_p50"] = round(float(np.median(values)), 2)
        row["variants"][variant]["local_ms_mean"] = round(float(np.mean(values)), 2)
        row["variants"][variant]["cost_ratio_to_first"] = round(
            float(np.mean(costs[first]) / np.mean(values)), 2
        )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=200, help="per species, seeded sample")
    parser.add_argument("--timed", type=int, default=30, help="queries per species timed")
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS))
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path("/tmp/wildweb-ranking-bench"),
        help="embeddings are kept here (outside the repo); shared with ranking.py",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    embedder = load_model("imagenet", device="cpu")
    rows = {}
    for name in args.datasets:
        rows[name] = _species_row(name, args, embedder)
        print(json.dumps({name: rows[name]}), flush=True)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
