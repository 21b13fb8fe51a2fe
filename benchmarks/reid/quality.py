"""Re-ID quality per species: zero-shot embedding vs SIFT vs hand-set and fitted fusion.

For each species a disjoint-identity split is made (seeded). The fusion is calibrated on the
*train* identities' honest shortlists; every method ranks the *test* identities' photos by
honest leave-one-out (``reid.evaluation``: the app's shortlist ranking, the query's own
encounter never in the gallery), so no identity used for calibration is evaluated.

    .venv/bin/python benchmarks/reid/quality.py --identities 20 --max-per-identity 6
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from reid.data import load_records, subset_records
from reid.evaluation import PairMatcher, evaluate_records, honest_queries, record_shortlists
from reid.inference import load_model
from reid.method_selection import method_select
from reid.splits import disjoint_identity_split

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
DATASETS = ("fs48_fish", "chimp_faces_demo", "dogfacenet", "holstein2025_cowfaces")
METHODS = ("embedding", "local", "fused", "calibrated")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--identities", type=int, default=20, help="per species, before split")
    parser.add_argument("--max-per-identity", type=int, default=6)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS))
    args = parser.parse_args()
    embedder = load_model("imagenet", device="cpu", image_size=args.image_size)
    for name in args.datasets:
        started = time.perf_counter()
        records = subset_records(
            load_records(SHARED / name),
            identities=args.identities,
            max_per_identity=args.max_per_identity,
            min_per_identity=2,
            seed=args.seed,
        )
        split = disjoint_identity_split(records, test_fraction=0.5, seed=args.seed)
        train = split.train
        queries = honest_queries([r.class_key for r in train], [r.encounter_key for r in train])
        selection = method_select(
            record_shortlists(
                train, embedder.embed_records(train), queries, PairMatcher(train, "sift")
            ),
            {i: r.encounter_key for i, r in enumerate(train)},
        )
        calibrator = selection["calibrator"]
        stats = evaluate_records(
            split.test,
            embedder.embed_records(split.test),
            METHODS,
            PairMatcher(split.test, "sift"),
            calibrator,
        )["methods"]
        result = {
            "n_test_images": len(split.test),
            "n_test_identities": len({r.class_key for r in split.test}),
            "calibration": calibrator.to_dict() if calibrator else None,
            "adopted_on_train": selection["method"],
        }
        for method in METHODS:
            result[method] = {k: round(stats[method][k], 4) for k in ("top1", "top5", "mAP")}
        result["seconds"] = round(time.perf_counter() - started, 1)
        print(json.dumps({name: result}), flush=True)


if __name__ == "__main__":
    main()
