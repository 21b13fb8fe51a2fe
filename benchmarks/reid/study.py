"""Quality study on the shared datasets: zero-shot vs SIFT vs fused vs trained models.

Every step writes under ``--work`` (default ``/tmp/reid-study``, outside the repository; no
image is copied, metadata files point at ``../shared/datasets``):

``prepare``
    Per species: a seeded 50/50 split of the *identities*; then every training image whose
    encounter also occurs on the test side is dropped, so no encounter (and no individual)
    is on both sides. (``reid.splits.disjoint_identity_split`` keeps encounter-linked
    identities together instead; on the full FS48 and cow sets the links chain most
    individuals into one component, giving 4/44 and 86/6 train/test identities, useless for
    training. Dropping the linked training images keeps both sides usable and is equally
    leakage-free.) Training subsets are capped (identities and images per identity) and
    written as ``metadata.csv`` files; test sets are capped and sampled one image per
    encounter, so a leave-one-out query never meets a near-duplicate frame of itself.
``train RUN``
    ``multi`` (training identities of all species), ``species:<dataset>`` (one species,
    1/n of the multi run's optimisation steps), ``loso:<dataset>`` (all species but one,
    same steps as ``multi``). Cached mode, CPU.
``evaluate``
    Honest leave-one-out top-1/mAP (``reid.evaluation``: the app's shortlist ranking, the
    query's encounter excluded) on each species' test set for embedding (every available
    model), local (SIFT), hand-set fused and calibrated fused rankings, plus the gallery-size
    curve.

    nice -n 10 .venv/bin/python benchmarks/reid/study.py prepare
    nice -n 10 .venv/bin/python benchmarks/reid/study.py train multi
    nice -n 10 .venv/bin/python benchmarks/reid/study.py train species:all
    nice -n 10 .venv/bin/python benchmarks/reid/study.py train loso:holstein2025_cowfaces
    nice -n 10 .venv/bin/python benchmarks/reid/study.py evaluate
    nice -n 10 .venv/bin/python benchmarks/reid/study.py evaluate \
        --datasets holstein2025_cowfaces --curve-models      # after the LOSO run
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from reid.data import Record, load_records, write_metadata

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
DATASETS = ("fs48_fish", "chimp_faces_demo", "dogfacenet", "holstein2025_cowfaces")

# Caps (stated in BENCHMARKS.md).
TRAIN_IDENTITIES = 300  # per species, training side
TRAIN_PER_IDENTITY = 8  # images per training identity
TEST_IDENTITIES = 40  # per species, leave-one-out test set
TEST_PER_IDENTITY = 6  # one image per encounter, at most this many
CURVE_IDENTITIES = 25  # per species, gallery-size curve
CALIBRATION_IDENTITIES = 30  # per species, training identities the fusion is fitted on
CURVE_SIZES = (1, 2, 4, 8, 16)  # 16 = "all" (capped)
IMAGE_SIZE = 160
EPOCHS = 6
BATCH = 32
MULTI_STEPS = 1200  # optimisation steps of the multi-species and each LOSO run
VIEWS = 3
TRAINABLE_STAGES = 3


def _record_from_row(row: dict) -> Record:
    return Record(**{**row, "bbox": tuple(row["bbox"]) if row["bbox"] else None})


def _dump(records: list[Record]) -> list[dict]:
    return [{k: getattr(r, k) for k in Record.__dataclass_fields__} for r in records]


def _one_per_encounter(records: list[Record], rng: random.Random) -> list[Record]:
    by_encounter: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        by_encounter[r.encounter_key].append(r)
    picked = [rng.choice(by_encounter[k]) for k in sorted(by_encounter)]
    rng.shuffle(picked)
    return picked


def prepare(work: Path, seed: int) -> dict:
    summary = {}
    for name in DATASETS:
        rng = random.Random(seed)
        records = load_records(SHARED / name)
        ids = sorted({r.class_key for r in records})
        rng.shuffle(ids)
        test_ids = set(ids[: len(ids) // 2])
        test_all = [r for r in records if r.class_key in test_ids]
        test_encounters = {r.encounter_key for r in test_all}
        train_all = [
            r
            for r in records
            if r.class_key not in test_ids and r.encounter_key not in test_encounters
        ]
        # Training subset: capped identities and images per identity.
        by_id: dict[str, list[Record]] = defaultdict(list)
        for r in train_all:
            by_id[r.class_key].append(r)
        train_keys = sorted(k for k, v in by_id.items() if len(v) >= 2)
        if len(train_keys) > TRAIN_IDENTITIES:
            train_keys = sorted(rng.sample(train_keys, TRAIN_IDENTITIES))
        train = []
        for key in train_keys:
            members = by_id[key]
            if len(members) > TRAIN_PER_IDENTITY:
                members = rng.sample(members, TRAIN_PER_IDENTITY)
            train.extend(members)
        # Test sets: one image per encounter.
        by_test_id: dict[str, list[Record]] = defaultdict(list)
        for r in test_all:
            by_test_id[r.class_key].append(r)
        candidates = sorted(
            k for k, v in by_test_id.items() if len({r.encounter_key for r in v}) >= 2
        )
        loo_keys = sorted(rng.sample(candidates, min(TEST_IDENTITIES, len(candidates))))
        loo = []
        for key in loo_keys:
            loo.extend(_one_per_encounter(by_test_id[key], rng)[:TEST_PER_IDENTITY])
        curve_keys = sorted(rng.sample(candidates, min(CURVE_IDENTITIES, len(candidates))))
        curve_queries, curve_gallery = [], []
        for key in curve_keys:
            picks = _one_per_encounter(by_test_id[key], rng)
            n_query = 2 if len(picks) >= 4 else 1
            curve_queries.extend(picks[:n_query])
            # Gallery order is the nesting order: the first k per identity form size k.
            curve_gallery.extend(picks[n_query : n_query + CURVE_SIZES[-1]])
        assert not ({r.class_key for r in train} & test_ids)
        assert not ({r.encounter_key for r in train} & test_encounters)
        out = work / "data" / name
        write_metadata(train, out / "train")
        (out / "test.json").write_text(
            json.dumps(
                {
                    "loo": _dump(loo),
                    "curve_queries": _dump(curve_queries),
                    "curve_gallery": _dump(curve_gallery),
                }
            )
        )
        summary[name] = {
            "train_images": len(train),
            "train_identities": len(train_keys),
            "train_images_dropped_for_shared_encounters": sum(
                1 for r in records if r.class_key not in test_ids
            )
            - len(train_all),
            "test_identities_total": len(test_ids),
            "loo_images": len(loo),
            "loo_identities": len(loo_keys),
            "curve_identities": len(curve_keys),
            "curve_queries": len(curve_queries),
            "curve_gallery": len(curve_gallery),
        }
        print(json.dumps({name: summary[name]}), flush=True)
    (work / "prepare.json").write_text(json.dumps(summary, indent=2))
    return summary


def _train(work: Path, run: str, datasets: list[str], steps: int, seed: int) -> dict:
    from reid.train import TrainConfig, train

    data_dirs = [str(work / "data" / d / "train") for d in datasets]
    n_images = sum(len(load_records(d)) for d in data_dirs)
    steps_per_epoch = max(1, steps // EPOCHS)
    config = TrainConfig(
        data_dirs=data_dirs,
        out_dir=str(work / "runs" / run.replace(":", "_")),
        mode="cached",
        image_size=IMAGE_SIZE,
        epochs=EPOCHS,
        batch_size=BATCH,
        samples_per_epoch=steps_per_epoch * BATCH,
        cached_views=VIEWS,
        trainable_stages=TRAINABLE_STAGES,
        evaluate=False,
        seed=seed,
    )
    started = time.perf_counter()
    result = train(config)
    wall = time.perf_counter() - started
    metrics = result.metrics
    summary = {
        "run": run,
        "datasets": datasets,
        "train_images": n_images,
        "classes": metrics["n_classes"],
        "steps": steps_per_epoch * EPOCHS,
        "cache_seconds": round(metrics["cache_seconds"], 1),
        "train_images_per_second": round(metrics["train_images_per_second"], 1),
        "wall_seconds": round(wall, 1),
        "peak_rss_mb": round(metrics["peak_memory_mb"]),
        "final_loss": round(metrics.get("final_loss", float("nan")), 3),
    }
    print(json.dumps(summary), flush=True)
    (Path(config.out_dir) / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def train_runs(work: Path, run: str, seed: int) -> None:
    if run == "multi":
        _train(work, run, list(DATASETS), MULTI_STEPS, seed)
    elif run.startswith("species:"):
        names = list(DATASETS) if run == "species:all" else [run.split(":", 1)[1]]
        for name in names:
            _train(work, f"species:{name}", [name], MULTI_STEPS // len(DATASETS), seed)
    elif run.startswith("loso:"):
        left_out = run.split(":", 1)[1]
        _train(work, run, [d for d in DATASETS if d != left_out], MULTI_STEPS, seed)
    else:
        raise SystemExit(f"unknown run {run}")


def _load_test(work: Path, name: str) -> dict[str, list[Record]]:
    data = json.loads((work / "data" / name / "test.json").read_text())
    return {k: [_record_from_row(row) for row in v] for k, v in data.items()}


def _calibration_records(work: Path, name: str) -> list[Record]:
    """Images of training identities (never test ones) to fit the fusion on: up to
    ``CALIBRATION_IDENTITIES`` identities, 4 images each, from different encounters where
    the identity has several (training-side fish each have one camera sequence)."""
    rng = random.Random(0)
    by_id: dict[str, list[Record]] = defaultdict(list)
    for r in load_records(work / "data" / name / "train"):
        by_id[r.class_key].append(r)
    keys = sorted(by_id)
    keys = sorted(rng.sample(keys, min(CALIBRATION_IDENTITIES, len(keys))))
    picked = []
    for key in keys:
        distinct = _one_per_encounter(by_id[key], rng)
        rest = [r for r in by_id[key] if r not in distinct]
        rng.shuffle(rest)
        picked.extend((distinct + rest)[:4])
    return picked


def _fitted_fusion(records: list[Record], vectors: np.ndarray):
    """Fusion calibrated on the calibration images' honest shortlists (the app's procedure,
    ``reid.method_selection.method_select``, done per model and species)."""
    from reid.evaluation import PairMatcher, honest_queries, record_shortlists
    from reid.method_selection import method_select

    queries = honest_queries([r.class_key for r in records], [r.encounter_key for r in records])
    shortlists = record_shortlists(records, vectors, queries, PairMatcher(records, "sift"))
    return method_select(shortlists, {i: r.encounter_key for i, r in enumerate(records)})[
        "calibrator"
    ]


METHODS = ("embedding", "local", "fused", "calibrated")


def evaluate(work: Path, curve_models: list[str], datasets: list[str]) -> dict:
    """Every number comes from the evaluation core (``reid.evaluation``): the app's shortlist
    ranking, the query's own encounter never in the gallery."""
    from reid.evaluation import PairMatcher, evaluate_records, methods_compare, record_shortlists
    from reid.inference import load_model

    models = {"imagenet@224": ("imagenet", 224), "imagenet@160": ("imagenet", IMAGE_SIZE)}
    runs = work / "runs"
    for path in sorted(runs.glob("*/model.pt")) if runs.exists() else []:
        models[path.parent.name] = (str(path), IMAGE_SIZE)
    embedders = {}
    results: dict = {"loo": {}, "curve": {}}

    def rounded(stats: dict) -> dict:
        return {k: round(stats[k], 3) if stats[k] is not None else None for k in ("top1", "mAP")}

    for name in datasets:
        test = _load_test(work, name)
        loo = test["loo"]
        matcher = PairMatcher(loo, "sift")
        calibration = _calibration_records(work, name)
        rows = {
            "n_images": len(loo),
            "n_identities": len({r.class_key for r in loo}),
            "calibration_images": len(calibration),
        }
        calibrators = {}
        for label, (spec, size) in models.items():
            if label.startswith("species_") and label != f"species_{name}":
                continue
            if label.startswith("loso_") and label != f"loso_{name}":
                continue
            if label not in embedders:
                embedders[label] = load_model(spec, device="cpu", image_size=size)
            calibrators[label] = _fitted_fusion(
                calibration, embedders[label].embed_records(calibration)
            )
            stats = evaluate_records(
                loo, embedders[label].embed_records(loo), METHODS, matcher, calibrators[label]
            )["methods"]
            key = label.replace(f"_{name}", "")
            for method in METHODS:
                rows[f"{method}[{key}]"] = rounded(stats[method])
        results["loo"][name] = rows
        print(json.dumps({"loo": {name: rows}}), flush=True)

        # Gallery-size curve: k gallery images per identity (first k in stored order).
        queries, gallery = test["curve_queries"], test["curve_gallery"]
        records = list(queries) + list(gallery)
        curve_matcher = PairMatcher(records, "sift")
        rank_in_identity = []
        seen: dict[str, int] = defaultdict(int)
        for r in gallery:
            rank_in_identity.append(seen[r.class_key])
            seen[r.class_key] += 1
        rank_in_identity = np.asarray(rank_in_identity)
        curve: dict = {
            "n_queries": len(queries),
            "n_identities": len(seen),
            "gallery_per_identity_median": int(np.median(list(seen.values()))),
        }
        vectors = {}
        for label in curve_models:
            if label not in models:
                continue
            if label not in embedders:
                spec, size = models[label]
                embedders[label] = load_model(spec, device="cpu", image_size=size)
            vectors[label] = embedders[label].embed_records(records)
        for k in CURVE_SIZES:
            mask = np.concatenate([np.zeros(len(queries), bool), rank_in_identity < k])
            entry = {"gallery_images": int(mask.sum())}
            for label, matrix in vectors.items():
                shortlists = record_shortlists(
                    records, matrix, range(len(queries)), curve_matcher, gallery=lambda q, m=mask: m
                )
                for method, stats in methods_compare(
                    shortlists, METHODS, calibrators.get(label)
                ).items():
                    entry[f"{method}[{label}]"] = rounded(stats)
            curve[str(k)] = entry
        results["curve"][name] = curve
        print(json.dumps({"curve": {name: curve}}), flush=True)
    (work / "evaluate.json").write_text(json.dumps(results, indent=2))
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, default=Path("/tmp/reid-study"))
    parser.add_argument("--seed", type=int, default=0)
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("prepare")
    training = sub.add_parser("train")
    training.add_argument("run", help="multi | species:all | species:<dataset> | loso:<dataset>")
    evaluation = sub.add_parser("evaluate")
    evaluation.add_argument("--curve-models", nargs="*", default=["imagenet@224", "multi"])
    evaluation.add_argument("--datasets", nargs="*", default=list(DATASETS))
    args = parser.parse_args()
    import torch

    print(json.dumps({"threads": torch.get_num_threads()}), flush=True)
    if args.what == "prepare":
        prepare(args.work, args.seed)
    elif args.what == "train":
        train_runs(args.work, args.run, args.seed)
    else:
        evaluate(args.work, args.curve_models, args.datasets)


if __name__ == "__main__":
    main()
