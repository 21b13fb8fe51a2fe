"""Which training recipe helps on unseen individuals? Side-by-side variants, one process.

Uses the study's identity-disjoint splits (run ``study.py prepare`` first). Each variant
trains in ``cached`` mode on one species' training identities and is scored by
leave-one-out on that species' test identities (one image per encounter), next to the
ImageNet zero-shot model at the same and at 224 px. Variants that share the frozen stages
reuse one feature cache, so the comparison costs training steps only.

    nice -n 10 .venv/bin/python benchmarks/reid/recipe.py --datasets holstein2025_cowfaces \\
        --variants old default --steps 120
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

from reid.backbones import DEFAULT_BACKBONE
from reid.data import load_records, subset_records, write_metadata
from reid.evaluation import embedding_retrieval
from reid.inference import Embedder, load_model
from reid.model import imagenet_model
from reid.train import TrainConfig, train
from training.budget import wanted_steps

# Overrides of TrainConfig per variant ("steps" overrides --steps; "budget" is the app's
# rule, training.budget.wanted_steps; "mixed" adds the other species' training photos the way
# the app's default mode mixes in original data). "old" is the recipe before imprinting and
# frozen BatchNorm became defaults.
VARIANTS: dict[str, dict] = {
    "old": {"imprint": False, "freeze_batchnorm": False},
    "default": {},
    "no-imprint": {"imprint": False},
    "no-freeze-bn": {"freeze_batchnorm": False},
    "low-lr": {"lr": 3e-4, "backbone_lr": 5e-5},
    "high-lr": {"backbone_lr": 5e-4},
    "higher-lr": {"lr": 3e-3, "backbone_lr": 1e-3},
    "highest-lr": {"lr": 5e-3, "backbone_lr": 2e-3},
    "mid-lr": {"lr": 2e-3, "backbone_lr": 7e-4},
    "higher-lr-old": {"lr": 3e-3, "backbone_lr": 1e-3, "imprint": False, "freeze_batchnorm": False},
    "high-lr-old": {"backbone_lr": 5e-4, "imprint": False, "freeze_batchnorm": False},
    "high-lr-no-imprint": {"backbone_lr": 5e-4, "imprint": False},
    "high-lr-no-freeze-bn": {"backbone_lr": 5e-4, "freeze_batchnorm": False},
    "deeper": {"trainable_stages": 4},
    "scale-64": {"arcface_scale": 64.0},
    "margin-low": {"margin_min": 0.1, "margin_max": 0.3},
    "views-6": {"cached_views": 6},
    "steps-900": {"steps": 900},
    "lite2": {"backbone": "tf_efficientnet_lite2"},
    "mixed": {"mixed": True, "steps": "budget"},
    "miewid-aug": {"augmentation": "miewid"},
    "miewid-aug-views-6": {"augmentation": "miewid", "cached_views": 6},
}


# The app's caps on each other species' data in a mixed run (training.services.runs).
ORIGINAL_IDENTITIES = 50
ORIGINAL_PER_IDENTITY = 10


def _original_dirs(work: Path, name: str, datasets: tuple[str, ...]) -> list[str]:
    """The other species' training sides, capped as the app caps original data."""
    dirs = []
    for other in datasets:
        if other == name:
            continue
        records = subset_records(
            load_records(work / "data" / other / "train"),
            identities=ORIGINAL_IDENTITIES,
            max_per_identity=ORIGINAL_PER_IDENTITY,
            seed=0,
        )
        dirs.append(str(write_metadata(records, work / "recipe" / "originals" / other).parent))
    return dirs


def _score(model, records: list) -> dict:
    stats = embedding_retrieval(model.embed_records(records), records)
    return {"top1": round(stats["top1"], 3), "mAP": round(stats["mAP"], 3)}


def main() -> None:
    import study  # the split is the study's

    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, default=Path("/tmp/reid-study"))
    parser.add_argument("--datasets", nargs="+", default=["holstein2025_cowfaces"])
    parser.add_argument("--variants", nargs="+", default=["old", "default"])
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--image-size",
        type=int,
        nargs="+",
        default=[160],
        help="one or more sizes; every variant trains at each",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()

    for name in args.datasets:
        loo = study._load_test(args.work, name)["loo"]
        ids = [r.class_key for r in loo]
        row: dict = {"dataset": name, "queries": len(loo), "identities": len(set(ids))}
        backbones = {VARIANTS[v].get("backbone", DEFAULT_BACKBONE) for v in args.variants}
        for backbone, size in itertools.product(sorted(backbones), sorted({*args.image_size, 224})):
            zero_shot = Embedder(imagenet_model(backbone).eval(), image_size=size, device="cpu")
            row[f"imagenet {backbone}@{size}"] = _score(zero_shot, loo)
        print(json.dumps(row), flush=True)
        for variant, seed, size in itertools.product(args.variants, args.seeds, args.image_size):
            overrides = dict(VARIANTS[variant])
            steps = overrides.pop("steps", args.steps)
            data_dirs = [str(args.work / "data" / name / "train")]
            if overrides.pop("mixed", False):
                data_dirs += _original_dirs(args.work, name, study.DATASETS)
            if steps == "budget":
                records = load_records(data_dirs)
                steps = wanted_steps(
                    photos=len(records),
                    individuals=len({r.class_key for r in records}),
                    batch_size=args.batch_size,
                )
            out = args.work / "recipe" / name / f"{variant}-seed{seed}-{size}px"
            config = TrainConfig(
                data_dirs=data_dirs,
                out_dir=str(out),
                mode="cached",
                image_size=size,
                epochs=args.epochs,
                batch_size=args.batch_size,
                samples_per_epoch=steps // args.epochs * args.batch_size,
                cache_dir=str(args.work / "recipe" / "cache"),
                evaluate=False,
                seed=seed,
                **{"cached_views": 3, "trainable_stages": 3, **overrides},
            )
            started = time.perf_counter()
            result = train(config)
            seconds = time.perf_counter() - started
            model = load_model(str(result.model_path), device="cpu", image_size=size)
            print(
                json.dumps(
                    {
                        "dataset": name,
                        "variant": variant,
                        "seed": seed,
                        "image_size": size,
                        "steps": steps // args.epochs * args.epochs,
                        "seconds": round(seconds, 1),
                        "final_loss": round(result.metrics["final_loss"], 3),
                        **_score(model, loo),
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
