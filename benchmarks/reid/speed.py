"""Embedding throughput (plain timm eager vs reid.inference) and training throughput/memory.

    .venv/bin/python benchmarks/reid/speed.py embed --images 64
    .venv/bin/python benchmarks/reid/speed.py train --mode cached
    .venv/bin/python benchmarks/reid/speed.py train --mode full

Run ``train`` once per mode (separate processes) so peak memory (max RSS on CPU) is per mode.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"


def bench_embed(args: argparse.Namespace) -> dict:
    import timm

    from reid.backbones import load_lite_imagenet_weights
    from reid.inference import load_model

    rng = np.random.default_rng(0)
    images = [
        Image.fromarray(rng.integers(0, 255, (256, 200, 3), dtype=np.uint8))
        for _ in range(args.images)
    ]
    embedder = load_model("imagenet", device="cpu", image_size=224)
    plain = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0)
    load_lite_imagenet_weights(plain, "tf_efficientnet_lite0")
    plain.eval()
    batch = embedder.preprocess(images)  # same input tensors for the plain model

    def run_plain() -> None:
        with torch.no_grad():
            for start in range(0, len(batch), 32):
                plain(batch[start : start + 32])

    def run_reid() -> None:
        embedder.embed_images(images)

    results = {"threads": torch.get_num_threads(), "images": args.images, "image_size": 224}
    for name, fn in (("timm_eager_no_grad_tensors", run_plain), ("reid_embedder_pil", run_reid)):
        fn()  # warm-up
        timings = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            fn()
            timings.append(time.perf_counter() - started)
        results[name] = round(args.images / min(timings), 1)
    return results


def bench_train(args: argparse.Namespace) -> dict:
    from reid.train import TrainConfig, train

    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(
            data_dirs=[str(SHARED / "fs48_fish")],
            out_dir=out,
            mode=args.mode,
            identities=args.identities,
            max_per_identity=args.max_per_identity,
            image_size=args.image_size,
            epochs=args.epochs,
            batch_size=16,
            evaluate=False,
            cached_views=args.views,
            trainable_stages=args.trainable_stages,
        )
        started = time.perf_counter()
        result = train(config)
        total = time.perf_counter() - started
    metrics = result.metrics
    return {
        "mode": args.mode,
        "images": metrics["n_images"],
        "epochs": args.epochs,
        "image_size": args.image_size,
        "views": args.views if args.mode == "cached" else None,
        "trainable_stages": args.trainable_stages if args.mode == "cached" else "all",
        "train_images_per_second": round(metrics["train_images_per_second"], 1),
        "cache_seconds": round(metrics["cache_seconds"], 1),
        "total_seconds": round(total, 1),
        "peak_rss_mb": round(metrics["peak_memory_mb"]),
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="what", required=True)
    embed = sub.add_parser("embed")
    embed.add_argument("--images", type=int, default=64)
    embed.add_argument("--repeats", type=int, default=3)
    training = sub.add_parser("train")
    training.add_argument("--mode", choices=("cached", "full"), required=True)
    training.add_argument("--identities", type=int, default=8)
    training.add_argument("--max-per-identity", type=int, default=8)
    training.add_argument("--image-size", type=int, default=224)
    training.add_argument("--epochs", type=int, default=2)
    training.add_argument("--views", type=int, default=3)
    training.add_argument("--trainable-stages", type=int, default=3)
    args = parser.parse_args()
    result = bench_embed(args) if args.what == "embed" else bench_train(args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
