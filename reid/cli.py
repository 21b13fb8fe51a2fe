"""Command line: ``reid train | eval | embed | match``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reid.local_features import METHODS as LOCAL_METHODS
from reid.ranking import METHODS

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def _print(payload: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(payload, indent=2, default=_json_default))
        return
    for key, value in payload.items():
        if isinstance(value, dict):
            continue
        print(f"{key}: {value}")
    for name, stats in payload.get("per_species", {}).items():
        summary = ", ".join(f"{k}={stats[k]:.3f}" for k in ("top1", "top5", "mAP") if k in stats)
        print(f"  {name}: {summary} (n={stats.get('n_queries')})")


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _records(args: argparse.Namespace) -> list:
    from reid.data import load_records, subset_records

    # Without limits subset_records keeps every record in order.
    return subset_records(
        load_records(args.data),
        identities=args.identities,
        max_per_identity=args.max_per_identity,
        seed=args.seed,
    )


def command_train(args: argparse.Namespace) -> int:
    """``reid train``: train or fine-tune; writes RUN_DIR/model.pt, config.json, metrics.json."""
    from tqdm import tqdm

    from reid.train import TrainConfig, train

    config = TrainConfig(
        data_dirs=args.data,
        out_dir=args.out,
        mode=args.mode,
        backbone=args.backbone,
        image_size=args.image_size,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        backbone_lr=args.backbone_lr,
        embedding_dim=args.embedding_dim,
        init=args.init,
        resume=args.resume,
        seed=args.seed,
        num_workers=args.workers,
        identities=args.identities,
        max_per_identity=args.max_per_identity,
        trainable_stages=args.trainable_stages,
        cached_views=args.views,
        cache_dir=args.cache_dir,
        hflip=args.hflip,
        device=args.device,
        validation_dirs=args.validation,
        patience=args.patience,
    )
    bars: dict[str, tqdm] = {}

    def progress(info: dict[str, Any]) -> None:
        phase = info.get("phase", "train")
        if phase == "cache":
            bar = bars.setdefault(
                "cache",
                tqdm(
                    total=info["total"], desc="caching features", disable=args.json, file=sys.stderr
                ),
            )
            bar.n = info["done"]
            bar.refresh()
            return
        if phase == "validate":
            if not args.json:
                tqdm.write(
                    f"epoch {info['epoch'] + 1}: validation top-1 "
                    f"{info['validation_top1']:.3f} (best {info['best_top1']:.3f})",
                    file=sys.stderr,
                )
            return
        bar = bars.setdefault(
            "train",
            tqdm(
                total=info["total_steps"],
                desc="training",
                disable=args.json,
                file=sys.stderr,
                initial=info["step"] - 1,
            ),
        )
        bar.update(1)
        bar.set_postfix(epoch=info["epoch"], loss=f"{info['loss']:.3f}")

    result = train(config, progress_callback=progress)
    for bar in bars.values():
        bar.close()
    _print(
        {
            "model_path": str(result.model_path),
            "out_dir": str(result.out_dir),
            "stopped": result.stopped,
            **result.metrics,
        },
        args.json,
    )
    return 0


def command_eval(args: argparse.Namespace) -> int:
    """``reid eval``: the app's shortlist ranking under the honest protocol of
    :mod:`reid.evaluation` (the query's own encounter is never in the gallery)."""
    from reid.evaluation import PairMatcher, evaluate_records
    from reid.fusion import FusionCalibrator
    from reid.inference import load_model
    from reid.ranking import NEEDS_LOCAL

    records = _records(args)
    embedder = load_model(args.model, device=args.device, image_size=args.image_size)
    calibrator = None
    if args.calibration:
        calibrator = FusionCalibrator.from_dict(json.loads(Path(args.calibration).read_text()))
    matcher = PairMatcher(records, args.local_method) if args.method in NEEDS_LOCAL else None
    evaluated = evaluate_records(
        records,
        embedder.embed_records(records),
        methods=(args.method,),
        matcher=matcher,
        calibrator=calibrator,
        max_queries=args.max_queries,
        seed=args.seed,
        open_set=args.protocol == "open-set",
        threshold=args.threshold,
    )
    result = dict(evaluated["methods"].get(args.method, {}))
    result.update(
        per_species={name: stats[args.method] for name, stats in evaluated["per_species"].items()},
        protocol=args.protocol,
        method=args.method,
        local_method=args.local_method,
        model=args.model,
        n_images=len(records),
    )
    _print(result, args.json)
    return 0


def command_embed(args: argparse.Namespace) -> int:
    """``reid embed``: write embeddings and image ids to an ``.npz`` file."""
    import numpy as np

    from reid.inference import load_model

    records = _records(args)
    embedder = load_model(args.model, device=args.device, image_size=args.image_size)
    vectors = embedder.embed_records(records)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        out,
        embeddings=vectors,
        image_ids=np.array([r.image_id for r in records]),
        identities=np.array([r.identity for r in records]),
        species=np.array([r.species for r in records]),
    )
    _print(
        {"out": str(out), "n_images": len(records), "embedding_dim": embedder.embedding_dim},
        args.json,
    )
    return 0


def _gallery(directory: Path) -> tuple[list[str], list[str]]:
    """Image paths and identities of a dataset folder or an ``<identity>/<image>`` tree."""
    if (directory / "metadata.csv").exists():
        from reid.data import load_records

        records = load_records(directory)
        return [r.path for r in records], [r.class_key for r in records]
    paths = sorted(p for p in directory.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return [str(p) for p in paths], [p.parent.name for p in paths]


def command_match(args: argparse.Namespace) -> int:
    """``reid match``: rank the gallery's identities for one query image, as the app does."""
    from reid.data import load_image
    from reid.inference import load_model
    from reid.local_features import extract, match
    from reid.ranking import NEEDS_LOCAL, Neighbour, rank, shortlist

    embedder = load_model(args.model, device=args.device, image_size=args.image_size)
    paths, identities = _gallery(Path(args.gallery))
    if not paths:
        raise SystemExit(f"no images found in {args.gallery}")
    query_image = load_image(args.query)
    query_vector = embedder.embed_images([query_image])[0]
    cosine = embedder.embed_paths(paths) @ query_vector

    neighbours = [
        Neighbour(i, identity, float(score))
        for i, (identity, score) in enumerate(zip(identities, cosine, strict=True))
    ]
    local = None
    if args.method in NEEDS_LOCAL:
        query_keypoints = extract(query_image, method=args.local_method)

        def local(index: int) -> Any:
            return match(
                query_keypoints, extract(load_image(paths[index]), method=args.local_method)
            )

    ranked = rank(shortlist(neighbours, local, size=args.top), args.method)
    rows = [
        {
            "identity": c.individual_id,
            "cosine": c.cosine,
            "best_image": paths[c.annotation_id],
            **({"inliers": c.inliers, "probability": c.probability} if local else {}),
        }
        for c in ranked
    ]
    if args.json:
        print(json.dumps({"query": args.query, "candidates": rows}, indent=2))
    else:
        for position, row in enumerate(rows, 1):
            extra = (
                f" inliers={row['inliers']} p={row['probability']:.3f}" if "inliers" in row else ""
            )
            print(f"{position:>3}. {row['identity']}  cosine={row['cosine']:.3f}{extra}")
    return int(any(c != c for c in cosine.tolist()))  # NaN != NaN


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``reid`` command."""
    parser = argparse.ArgumentParser(prog="reid", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    _add_train_parser(commands)
    _add_eval_parser(commands)
    _add_embed_parser(commands)
    _add_match_parser(commands)
    return parser


def _add_common_arguments(sub: argparse.ArgumentParser, *, data: bool = True) -> None:
    """Arguments every subcommand takes; ``data``: it reads dataset folders."""
    if data:
        sub.add_argument(
            "--data",
            action="append",
            required=True,
            help="dataset folder with metadata.csv (repeatable)",
        )
        sub.add_argument("--identities", type=int, help="at most N identities per species")
        sub.add_argument("--max-per-identity", type=int, help="at most N images per identity")
    sub.add_argument("--seed", type=int, default=0)
    sub.add_argument("--device", help="torch device (default: cuda when available)")
    sub.add_argument("--json", action="store_true", help="print JSON")


def _add_train_parser(commands: argparse._SubParsersAction) -> None:
    from reid.train import TrainConfig  # its defaults are the CLI's

    train = commands.add_parser("train", help="train or fine-tune a model")
    _add_common_arguments(train)
    train.add_argument("--out", required=True, help="run folder")
    train.add_argument("--mode", choices=("cached", "full"), default="cached")
    train.add_argument("--backbone", default=TrainConfig.backbone)
    train.add_argument("--image-size", type=int, default=TrainConfig.image_size)
    train.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    train.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    train.add_argument("--lr", type=float, default=TrainConfig.lr)
    train.add_argument("--backbone-lr", type=float, default=TrainConfig.backbone_lr)
    train.add_argument("--embedding-dim", type=int)
    train.add_argument("--init", help="model.pt or run folder to fine-tune from")
    train.add_argument("--resume", action="store_true", help="continue RUN_DIR/checkpoint.pt")
    train.add_argument("--trainable-stages", type=int, default=TrainConfig.trainable_stages)
    train.add_argument(
        "--views", type=int, default=TrainConfig.cached_views, help="cached views per image"
    )
    train.add_argument("--cache-dir")
    train.add_argument("--hflip", action="store_true")
    train.add_argument("--workers", type=int, default=0)
    train.add_argument(
        "--validation",
        action="append",
        help="dataset folder of held-out individuals: top-1 after every epoch, "
        "the best epoch is kept (repeatable)",
    )
    train.add_argument(
        "--patience", type=int, help="stop after N epochs without a better validation top-1"
    )
    train.set_defaults(handler=command_train)


def _add_eval_parser(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser("eval", help="evaluate on a dataset")
    _add_common_arguments(evaluate)
    evaluate.add_argument("--model", default="imagenet")
    evaluate.add_argument(
        "--protocol",
        choices=("leave-one-out", "open-set"),
        default="leave-one-out",
        help="open-set: also rank each query with its individual removed, and report BAKS/BAUS",
    )
    evaluate.add_argument("--method", choices=METHODS, default="embedding")
    evaluate.add_argument("--local-method", choices=LOCAL_METHODS, default="sift")
    evaluate.add_argument("--max-queries", type=int, help="per species, a seeded sample")
    evaluate.add_argument("--image-size", type=int)
    evaluate.add_argument("--calibration", help="JSON file of FusionCalibrator.to_dict()")
    evaluate.add_argument(
        "--threshold",
        type=float,
        help="open-set threshold (default: the one maximising the geometric "
        "mean of BAKS and BAUS on these queries, reported as such)",
    )
    evaluate.set_defaults(handler=command_eval)


def _add_embed_parser(commands: argparse._SubParsersAction) -> None:
    embed = commands.add_parser("embed", help="write embeddings to .npz")
    _add_common_arguments(embed)
    embed.add_argument("--model", default="imagenet")
    embed.add_argument("--out", required=True)
    embed.add_argument("--image-size", type=int)
    embed.set_defaults(handler=command_embed)


def _add_match_parser(commands: argparse._SubParsersAction) -> None:
    match_parser = commands.add_parser("match", help="rank gallery identities for one image")
    _add_common_arguments(match_parser, data=False)
    match_parser.add_argument("query")
    match_parser.add_argument("gallery")
    match_parser.add_argument("--model", default="imagenet")
    match_parser.add_argument("--image-size", type=int)
    match_parser.add_argument("--top", type=int, default=10)
    match_parser.add_argument("--method", choices=METHODS, default="embedding")
    match_parser.add_argument("--local-method", choices=LOCAL_METHODS, default="sift")
    match_parser.set_defaults(handler=command_match)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``reid`` console script."""
    args = build_parser().parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
