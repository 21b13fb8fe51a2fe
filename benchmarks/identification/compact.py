"""Compact stored vectors: does 256-d PCA(-whitening) keep honest top-1 and mAP?

Embeds every shared photo with the zero-shot model (cached in ``--cache``), then scores the
embedding ranking per species under the honest protocol: each query is a photo whose
individual has another encounter; the gallery is the rest of its species minus the query's
own encounter; individuals score the max over their photos (what the app shows); mAP is the
mean of 1/rank of the true individual. Variants, all L2-normalised before cosine:

* ``full``: the stored 1,280-d vector.
* ``pca``: PCA to ``--dim``, fitted on every species' gallery together.
* ``pca-whiten``: the same, each component divided by its standard deviation.
* ``*-other``: fitted on the *other* species only, as for a species the fit never saw.
* ``random``: a seeded random orthogonal projection (needs no fit).
* ``*-unseen-queries``: fitted on the other species and half of this species' encounters;
  only photos of the other half are queries (full vs PCA-whitening on the same queries).

    nice -n 10 .venv/bin/python benchmarks/identification/compact.py --out /tmp/compact.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from reid.compaction import Compaction
from reid.data import load_records
from reid.evaluation import honest_queries
from reid.inference import load_model

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
DATASETS = ("chimp_faces_demo", "holstein2025_cowfaces", "fs48_fish", "dogfacenet", "manta_demo")


def _embed_all(cache: Path, model: str) -> dict[str, dict[str, np.ndarray]]:
    cache.mkdir(parents=True, exist_ok=True)
    embedder = load_model(model)
    out = {}
    for name in DATASETS:
        file = cache / f"{name}.npz"
        if not file.is_file():
            records = load_records(SHARED / name)
            started = time.perf_counter()
            vectors = embedder.embed_records(records)
            print(f"{name}: {len(records)} photos in {time.perf_counter() - started:.1f} s")
            np.savez(
                file,
                vectors=vectors,
                identities=np.array([r.class_key for r in records]),
                encounters=np.array([r.encounter_key for r in records]),
            )
        data = np.load(file)
        out[name] = {key: data[key] for key in ("vectors", "identities", "encounters")}
    return out


def honest_scores(
    vectors: np.ndarray,
    identities: np.ndarray,
    encounters: np.ndarray,
    query_mask: np.ndarray | None = None,
) -> dict:
    """Individual-level top-1 and mAP (1/rank), query's own encounter left out of its gallery
    (queries limited to ``query_mask`` when given)."""
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = honest_queries(identities.tolist(), encounters.tolist())
    if query_mask is not None:
        queries = [q for q in queries if query_mask[q]]
    names, inverse = np.unique(identities, return_inverse=True)
    hits, reciprocal = [], []
    for start in range(0, len(queries), 512):
        block = np.asarray(queries[start : start + 512])
        scores = vectors[block] @ vectors.T
        scores[encounters[block][:, None] == encounters[None, :]] = -np.inf
        per_individual = np.full((len(block), len(names)), -np.inf)
        for column in range(len(names)):
            members = inverse == column
            per_individual[:, column] = scores[:, members].max(axis=1)
        truth = per_individual[np.arange(len(block)), inverse[block]]
        rank = 1 + (per_individual > truth[:, None]).sum(axis=1)
        hits.extend((rank == 1).tolist())
        reciprocal.extend((1.0 / rank).tolist())
    n = len(hits)
    top1 = float(np.mean(hits))
    return {
        "top1": round(top1, 4),
        "top1_se": round(float(np.sqrt(top1 * (1 - top1) / n)), 4),
        "mAP": round(float(np.mean(reciprocal)), 4),
        "queries": n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="imagenet")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/compact-cache"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    data = _embed_all(args.cache, args.model)
    everything = np.concatenate([d["vectors"] for d in data.values()])
    fitted = {
        "pca": Compaction.fit(everything, dim=args.dim, whiten=False),
        "pca-whiten": Compaction.fit(everything, dim=args.dim, whiten=True),
        "random": Compaction.random(everything.shape[1], dim=args.dim, seed=0),
    }
    results: dict[str, dict] = {}
    for name, d in data.items():
        others = np.concatenate([o["vectors"] for n, o in data.items() if n != name])
        variants = {
            "full": d["vectors"],
            **{key: c.apply(d["vectors"]) for key, c in fitted.items()},
            "pca-other": Compaction.fit(others, dim=args.dim, whiten=False).apply(d["vectors"]),
            "pca-whiten-other": Compaction.fit(others, dim=args.dim, whiten=True).apply(
                d["vectors"]
            ),
        }
        results[name] = {
            key: honest_scores(v, d["identities"], d["encounters"]) for key, v in variants.items()
        }
        # As in the app: the fit saw the gallery (other species + half of this species'
        # encounters), the queries are the other half, which it never saw.
        encounters = np.unique(d["encounters"])
        rng = np.random.default_rng(0)
        fitted_half = set(rng.choice(encounters, size=len(encounters) // 2, replace=False))
        in_fit = np.array([e in fitted_half for e in d["encounters"]])
        half = Compaction.fit(np.concatenate([others, d["vectors"][in_fit]]), args.dim, True)
        for key, v in (
            ("full-unseen-queries", d["vectors"]),
            ("pca-whiten-unseen-queries", half.apply(d["vectors"])),
        ):
            results[name][key] = honest_scores(v, d["identities"], d["encounters"], ~in_fit)
        print(name, json.dumps(results[name]))
    if args.out:
        args.out.write_text(json.dumps({"dim": args.dim, "results": results}, indent=1))


if __name__ == "__main__":
    main()
