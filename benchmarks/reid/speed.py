"""Embedding throughput (the default path vs torch eager) and training throughput/memory.

    .venv/bin/python benchmarks/reid/speed.py embed --images 96 --repeats 5
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

import torch

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"


def bench_embed(args: argparse.Namespace) -> dict:
    """The app's default path (``backend="auto"``: ONNX Runtime on a CPU) against torch eager,
    end to end from decoded real photos, the two taking turns in every repeat."""
    from reid.data import load_image, load_records
    from reid.inference import load_model

    records = load_records(SHARED / "holstein2025_cowfaces")[:: 3776 // args.images][: args.images]
    images = [load_image(record) for record in records]
    paths = {
        "default_auto": load_model("imagenet", image_size=224),
        "torch_eager": load_model("imagenet", image_size=224, backend="torch"),
    }
    timings: dict[str, list[float]] = {name: [] for name in paths}
    vectors = {name: embedder.embed_images(images) for name, embedder in paths.items()}  # warm
    for _ in range(args.repeats):
        for name, embedder in paths.items():
            started = time.perf_counter()
            embedder.embed_images(images)
            timings[name].append(time.perf_counter() - started)
    rates = {name: round(len(images) / min(t), 1) for name, t in timings.items()}
    cosine = (vectors["default_auto"] * vectors["torch_eager"]).sum(axis=1)
    return {
        "threads": torch.get_num_threads(),
        "images": len(images),
        "image_size": 224,
        "default_backend": paths["default_auto"].backend,
        "images_per_second": rates,
        "default_over_torch": round(rates["default_auto"] / rates["torch_eager"], 2),
        "cosine_min": round(float(cosine.min()), 6),
    }


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
    embed.add_argument("--images", type=int, default=96)
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
