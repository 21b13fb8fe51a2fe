"""Ranking quality per shared species under the honest protocol, through the evaluation core.

For each species: the zero-shot embedding (ImageNet lite0 + GeM, the app's version 0) of every
gallery photo; a seeded sample of honest queries (the query's encounter is never in the
gallery, its individual must have another encounter); the app's shortlist (50 neighbours →
10 individuals → keypoints on their best photos) matched with SIFT and with XFeat +
LighterGlue; then every ranking method over the same shortlists: embedding, local, the
hand-set fusion (``fused``) and the calibrated fusion (cross-fitted, sighting-disjoint), the
method ``calibrate`` would adopt, and the open-set threshold (chosen on half the individuals,
scored on the other half, both ways). Pairs/s of each local method are timed side by side on
the same pairs, one thread.

    nice -n 10 .venv/bin/python benchmarks/reid/ranking.py --queries 100 \
        --out /tmp/ranking.json
"""

from __future__ import annotations

import argparse
import json
import pickle
import time
from pathlib import Path

import numpy as np
import torch

from reid.data import load_records, subset_records
from reid.evaluation import (
    PairMatcher,
    honest_queries,
    methods_compare,
    open_set_metrics,
    record_shortlists,
    threshold_select,
)
from reid.inference import load_model
from reid.method_selection import method_select
from reid.ranking import CALIBRATED, EMBEDDING, FUSED, LOCAL, rank

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
# dataset, gallery cap (identities, photos per identity; None: all)
DATASETS = {
    "chimp_faces_demo": (None, None),
    "holstein2025_cowfaces": (None, 20),
    "fs48_fish": (None, 30),
    "dogfacenet": (300, None),
    "manta_demo": (None, None),
}
LOCAL_METHODS = ("sift", "xfeat")


def species_records(name: str, seed: int) -> list:
    """A shared dataset's photos, its gallery capped as :data:`DATASETS` says."""
    identities, per_identity = DATASETS[name]
    records = load_records(SHARED / name)
    if identities or per_identity:
        records = subset_records(
            records,
            identities=identities,
            max_per_identity=per_identity,
            min_per_identity=2,
            seed=seed,
        )
    return records


def species_vectors(name: str, records: list, cache: Path, embedder) -> np.ndarray:  # noqa: ANN001
    """The zero-shot vectors of ``records``, kept in ``cache`` (outside the repo) once made."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"{name}-vectors.npy"
    if path.exists():
        return np.load(path)
    vectors = embedder.embed_records(records)
    np.save(path, vectors)
    return vectors


def _open_set_two_fold(shortlists: list, unknown: list, method: str, calibrator) -> dict:  # noqa: ANN001
    """Threshold chosen on one half of the individuals, scored on the other, and back."""
    halves = []
    individuals = sorted({s.truth for s in shortlists})
    for fold in (0, 1):
        chosen = {t for i, t in enumerate(individuals) if i % 2 == fold}

        def ranked(items: list, keep: bool, chosen: set = chosen) -> list:
            return [
                (s.truth, rank(s.candidates, method, calibrator))
                for s in items
                if (s.truth in chosen) == keep
            ]

        threshold = threshold_select(ranked(shortlists, True), ranked(unknown, True))["threshold"]
        halves.append(
            open_set_metrics(ranked(shortlists, False), ranked(unknown, False), threshold)
        )
    keys = ("BAKS", "BAUS", "geometric_mean")
    return {k: float(np.mean([h[k] for h in halves if h[k] is not None])) for k in keys} | {
        "thresholds": [h["threshold"] for h in halves]
    }


def _pairs_per_second(matchers: dict, pairs: list) -> dict:
    """Matching speed of each local method on the same (already extracted) pairs."""
    from reid.local_features import match

    speed = {}
    for name, matcher in matchers.items():
        keypoints = [(matcher.keypoints(a), matcher.keypoints(b)) for a, b in pairs]
        started = time.perf_counter()
        for a, b in keypoints:
            match(a, b)
        speed[name] = round(len(pairs) / (time.perf_counter() - started), 1)
    return speed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queries", type=int, default=100, help="per species, seeded sample")
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS))
    parser.add_argument("--local-methods", nargs="*", default=list(LOCAL_METHODS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out")
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path("/tmp/wildweb-ranking-bench"),
        help="embeddings and shortlists are kept here (outside the repo)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)  # six helpers share two cores; one thread each is steadier
    embedder = load_model("imagenet", device="cpu")
    rows = {}
    for name in args.datasets:
        started = time.perf_counter()
        records = species_records(name, args.seed)
        vectors = species_vectors(name, records, args.cache, embedder)
        eligible = honest_queries(
            [r.class_key for r in records], [r.encounter_key for r in records]
        )
        rng = np.random.default_rng(args.seed)
        queries = sorted(
            rng.choice(eligible, size=min(args.queries, len(eligible)), replace=False).tolist()
        )
        encounter_of = {i: r.encounter_key for i, r in enumerate(records)}
        row: dict = {
            "gallery_photos": len(records),
            "gallery_individuals": len({r.class_key for r in records}),
            "honest_queries": len(eligible),
            "sampled_queries": len(queries),
            "embed_seconds": round(time.perf_counter() - started, 1),
        }
        matchers = {}
        for local_method in args.local_methods:
            t0 = time.perf_counter()
            matcher = PairMatcher(records, local_method)
            matchers[local_method] = matcher
            cached = args.cache / f"{name}-{local_method}-shortlists.pkl"
            if cached.exists():  # matched before: evaluate again without re-matching
                saved = pickle.loads(cached.read_bytes())
                shortlists, unknown = saved["known"], saved["unknown"]
            else:
                shortlists = record_shortlists(records, vectors, queries, matcher)
                unknown = record_shortlists(
                    records, vectors, queries, matcher, exclude_individual=True
                )
                cached.write_bytes(pickle.dumps({"known": shortlists, "unknown": unknown}))
            selection = method_select(shortlists, encounter_of)
            calibrator = selection["calibrator"]
            metrics = methods_compare(shortlists, (EMBEDDING, LOCAL, FUSED, CALIBRATED), calibrator)
            metrics[CALIBRATED] = selection["metrics"].get(CALIBRATED)  # cross-fitted
            row[local_method] = {
                "methods": {
                    m: {k: round(v, 4) if isinstance(v, float) else v for k, v in (s or {}).items()}
                    for m, s in metrics.items()
                },
                "adopted": selection["method"],
                "decision": selection["reason"],
                "open_set_fused": _open_set_two_fold(shortlists, unknown, FUSED, None),
                "open_set_adopted": _open_set_two_fold(
                    shortlists, unknown, selection["method"], calibrator
                ),
                "pairs_matched": matcher.pairs_matched,
                "seconds": round(time.perf_counter() - t0, 1),
            }
            print(json.dumps({name: {local_method: row[local_method]}}), flush=True)
        if len(matchers) > 1:
            pairs = sorted(
                {
                    (q, c.annotation_id)
                    for s in record_shortlists(records, vectors, queries[:20], None)
                    for q in [s.query]
                    for c in s.candidates
                }
            )[:100]
            row["pairs_per_second"] = _pairs_per_second(matchers, pairs)
        rows[name] = row
        print(
            json.dumps({name: {k: v for k, v in row.items() if k not in args.local_methods}}),
            flush=True,
        )
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
