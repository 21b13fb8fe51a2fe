"""Onboarding benchmark: a shared species imported as new, fine-tuned and promoted, both modes.

The species is imported with ``import_dataset`` (``--train-individuals`` +
``--held-out-individuals`` individuals, ``--images`` photos each). Then, for each mode,
``finetune --wait --promote --json`` trains on ``--train-individuals`` of them, measures held-out
top-1 on the rest (the run's ``validation_fraction`` is set for that split; individuals linked by
a shared encounter stay together, so it can be off by one or two), re-embeds the species and
switches to the new model. Between the modes the species is rolled back to its previous model,
so both start from the same base. The other species already in the database are the "original
data" of ``with-original-data`` and the forgetting check of both modes.

Run it against a database and folders of its own (run folders are named by run id, so two
databases must not share a PRIVATE_ROOT); it refuses a species that already exists::

    DATABASE_URL=postgresql://postgres:@/wildweb_onboard?host=$PWD/var/pg \\
    MEDIA_ROOT=$PWD/var/onboard-media PRIVATE_ROOT=$PWD/var/onboard-private \\
    REDIS_URL=redis://127.0.0.1:6379/15 \\
    nice -n 10 .venv/bin/python benchmarks/training/onboarding.py \\
        --dataset ../shared/datasets/fs48_fish --species Goldfish \\
        --original ../shared/datasets/holstein2025_cowfaces:Cow:30:8 \\
        --out benchmarks/training/onboarding-goldfish.json
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
MODES = ("new-data-only", "with-original-data")


def _command(name: str, *args: str, **options: Any) -> dict[str, Any]:
    from django.core.management import call_command

    out = io.StringIO()
    call_command(name, *args, json=True, stdout=out, **options)
    return json.loads(out.getvalue())


def original_import(spec: str) -> dict[str, Any] | None:
    """``FOLDER:SPECIES:INDIVIDUALS:IMAGES``; skipped when the species is already there."""
    from catalogue.models import Species

    folder, name, individuals, images = spec.rsplit(":", 3)
    if Species.objects.filter(name__iexact=name).exists():
        return None
    started = time.monotonic()
    report = _command(
        "import_dataset",
        folder,
        species=name,
        max_individuals=int(individuals),
        images_per_individual=int(images),
    )
    return {
        "species": name,
        "annotations": report["result"]["annotations_created"],
        "seconds": round(time.monotonic() - started, 1),
    }


def onboarding_run(args: argparse.Namespace) -> dict[str, Any]:
    from catalogue.models import Species
    from training.services.promotion import model_rollback

    if Species.objects.filter(name__iexact=args.species).exists():
        raise SystemExit(f"{args.species} already exists here; onboarding needs it new.")
    originals = [report for spec in args.original if (report := original_import(spec))]
    individuals = args.train_individuals + args.held_out_individuals
    started = time.monotonic()
    imported = _command(
        "import_dataset",
        args.dataset,
        species=args.species,
        max_individuals=individuals,
        images_per_individual=args.images,
    )
    import_seconds = round(time.monotonic() - started, 1)
    species = Species.objects.get(name__iexact=args.species)
    results: dict[str, Any] = {}
    for mode in args.modes:
        report = _command(
            "finetune",
            species=args.species,
            mode=mode,
            engine_mode=args.engine_mode,
            epochs=args.epochs,
            image_size=args.image_size,
            seed=args.seed,
            wait=True,
            promote=True,
            hyperparameter=[f"validation_fraction={args.held_out_individuals / individuals}"],
        )
        counts = report["training"]["data"][species.name]
        results[mode] = {
            "run": report["run"],
            "train_individuals": counts["train_individuals"],
            "train_images": counts["train_images"],
            "held_out_individuals": counts["held_out_individuals"],
            "held_out_images": counts["held_out_images"],
            "seconds_to_report": report["seconds_to_report"],
            "seconds_to_promoted": report["seconds_to_promoted"],
            "train_seconds": report["training"]["seconds"],
            "hyperparameters": report["training"]["hyperparameters"],
            "promotion": report["promotion"],
            "before": report["before"],
            "after": report["after"],
            "zero_shot": report["zero_shot"],
            "recommended_ranking_method": report["recommended_ranking_method"],
            "ranking_method_top1": report["ranking_method_top1"],
            "forgetting": report["forgetting"],
            "other_species_data": {
                name: data
                for name, data in report["training"]["data"].items()
                if name != species.name
            },
        }
        model_rollback(species=species)  # the next mode starts from the same base model
    return {
        "species": species.name,
        "dataset": str(args.dataset),
        "imported": {
            "individuals": imported["plan"]["individuals"],
            "annotations": imported["result"]["annotations_created"],
            "seconds": import_seconds,
        },
        "originals_imported": originals,
        "epochs": args.epochs,
        "image_size": args.image_size,
        "engine_mode": args.engine_mode,
        "seed": args.seed,
        "modes": results,
    }


def summary_print(result: dict[str, Any]) -> None:
    print(
        f"\n{result['species']}: {result['imported']['individuals']} individuals imported "
        f"({result['imported']['annotations']} photos, {result['imported']['seconds']} s)"
    )
    print(
        "| mode | train ind./photos | held-out ind./photos | top-1 before | top-1 after | "
        "s to report | s to promoted | forgetting (before → after) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for mode, row in result["modes"].items():
        forgetting = "; ".join(
            f"{name} {v['before']:.3f} → {v['after']:.3f}" for name, v in row["forgetting"].items()
        )
        print(
            f"| {mode} | {row['train_individuals']}/{row['train_images']} | "
            f"{row['held_out_individuals']}/{row['held_out_images']} | "
            f"{row['before']['top1']:.3f} | {row['after']['top1']:.3f} | "
            f"{row['seconds_to_report']} | {row['seconds_to_promoted']} | {forgetting} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, help="folder with metadata.csv")
    parser.add_argument("--species", required=True)
    parser.add_argument("--train-individuals", type=int, default=20)
    parser.add_argument(
        "--held-out-individuals",
        type=int,
        default=30,
        help="at most the runs' eval_max_individuals (30) are measured",
    )
    parser.add_argument("--images", type=int, default=5, help="photos per individual")
    parser.add_argument(
        "--original",
        action="append",
        default=[],
        metavar="FOLDER:SPECIES:INDIVIDUALS:IMAGES",
        help="other species to import first when missing (repeatable)",
    )
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--engine-mode", choices=["cached", "full"], default="cached")
    parser.add_argument("--epochs", type=int, help="default: the app's CPU default")
    parser.add_argument("--image-size", type=int, help="default: the app's CPU default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the result as JSON here")
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL"):
        raise SystemExit("Set DATABASE_URL to a database of the benchmark's own.")

    sys.path.insert(0, str(REPO_ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wildweb.settings")
    import django

    django.setup()
    result = onboarding_run(args)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    summary_print(result)


if __name__ == "__main__":
    main()
