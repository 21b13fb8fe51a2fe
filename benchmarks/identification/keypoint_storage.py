"""What storing keypoints costs: descriptor precision against inliers, and the bulk write.

1. ``pairs``: SIFT inlier counts on real same-individual and other-individual pairs of each
   shared species, matched from the extracted float32 rootSIFT and from what
   ``Keypoints.to_bytes`` stores (uint8), side by side.
2. ``writes``: the bulk write of one embedding batch's keypoints (16 photos, the ORM's
   ``bulk_create`` as the importer does), per photo, for float16 and uint8 blobs, with
   Postgres' default TOAST compression attempt (EXTENDED) and without (EXTERNAL), in one run.
   Uses the keypoints of the gallery ``pipeline.py`` leaves in ``--database``; every write is
   rolled back.

    .venv/bin/python benchmarks/identification/pipeline.py --species dogfacenet --held-back 0 \\
        --eval-queries 0
    .venv/bin/python benchmarks/identification/keypoint_storage.py pairs writes
"""

from __future__ import annotations

import argparse
import io
import random
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks" / "identification"))

DATASETS = REPO.parent / "shared" / "datasets"
PAIR_SPECIES = ("dogfacenet", "holstein2025_cowfaces", "fs48_fish", "chimp_faces_demo")
BATCH = 16


def pairs(per_species: int) -> None:
    from PIL import Image

    from reid.local_features import Keypoints, extract, match

    rng = random.Random(0)
    for name in PAIR_SPECIES:
        folders = sorted(p for p in (DATASETS / name / "images").iterdir() if p.is_dir())
        counts = []  # (same f32, same stored, other f32, other stored)
        for folder in rng.sample(folders, min(per_species, len(folders))):
            photos = sorted(folder.glob("*.jpg"))
            if len(photos) < 2:
                continue
            a, b = rng.sample(photos, 2)
            other = rng.choice(sorted(rng.choice(folders).glob("*.jpg")))
            found = [extract(Image.open(path)) for path in (a, b, other)]
            stored = [Keypoints.from_bytes(k.to_bytes()) for k in found]
            counts.append(
                (
                    match(found[0], found[1]).inliers,
                    match(stored[0], stored[1]).inliers,
                    match(found[0], found[2]).inliers,
                    match(stored[0], stored[2]).inliers,
                )
            )
        c = np.array(counts)
        print(
            f"{name}: {len(c)} pairs; same individual: mean inliers float32 {c[:, 0].mean():.2f}, "
            f"stored {c[:, 1].mean():.2f}, equal in {(c[:, 0] == c[:, 1]).mean():.0%}; "
            f"other individual: {c[:, 2].mean():.2f} / {c[:, 3].mean():.2f}, "
            f"equal in {(c[:, 2] == c[:, 3]).mean():.0%}",
            flush=True,
        )


def _float16_blob(keypoints) -> bytes:  # noqa: ANN001 - the encoding before uint8 rootSIFT
    buffer = io.BytesIO()
    np.savez(
        buffer,
        points=keypoints.points,
        descriptors=keypoints.descriptors.astype(np.float16),
        method=np.array(keypoints.method),
        image_size=np.array(keypoints.image_size, dtype=np.int64),
    )
    return buffer.getvalue()


def writes(database: str, photos: int, repeats: int) -> None:
    from search import _use_database

    _use_database(database, fresh=False)
    import django

    django.setup()
    from django.db import connection, transaction

    from identification.models import LocalFeatures
    from reid.local_features import Keypoints

    rows = list(LocalFeatures.objects.filter(method="sift").order_by("pk")[:photos])
    decoded = [Keypoints.from_bytes(bytes(row.data)) for row in rows]
    blobs = {
        "float16": [_float16_blob(k) for k in decoded],
        "uint8": [k.to_bytes() for k in decoded],
    }
    print(
        f"{len(rows)} photos, {np.mean([len(k) for k in decoded]):.0f} keypoints each; blob "
        + ", ".join(
            f"{kind} {np.mean([len(b) for b in v]) / 1024:.0f} kB" for kind, v in blobs.items()
        )
    )

    class Rollback(Exception):
        pass

    for repeat in range(repeats):
        for storage in ("EXTENDED", "EXTERNAL"):
            for kind, data in blobs.items():
                started = time.perf_counter()
                try:
                    with transaction.atomic():
                        with connection.cursor() as cursor:
                            cursor.execute(
                                "ALTER TABLE identification_localfeatures "
                                f"ALTER COLUMN data SET STORAGE {storage}"
                            )
                        for i in range(0, len(rows), BATCH):
                            LocalFeatures.objects.bulk_create(
                                [
                                    LocalFeatures(
                                        annotation_id=row.annotation_id,
                                        method="orb",  # beside the stored SIFT row
                                        data=blob,
                                        keypoint_count=1,
                                    )
                                    for row, blob in zip(rows[i : i + BATCH], data[i : i + BATCH])
                                ]
                            )
                        raise Rollback
                except Rollback:
                    pass
                per_photo = (time.perf_counter() - started) / len(rows) * 1000
                print(f"repeat {repeat}: {storage} {kind}: {per_photo:.2f} ms/photo", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parts", nargs="+", choices=("pairs", "writes"))
    parser.add_argument("--pairs-per-species", type=int, default=30)
    parser.add_argument("--database", default="wildweb_bench_pipeline")
    parser.add_argument("--photos", type=int, default=320)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if "pairs" in args.parts:
        pairs(args.pairs_per_species)
    if "writes" in args.parts:
        writes(args.database, args.photos, args.repeats)


if __name__ == "__main__":
    main()
