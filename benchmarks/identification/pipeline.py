"""Upload → candidates latency over a gallery of real annotations, and ranking quality.

1. Imports the shared species into a fresh database through the app's importer; embeddings
   and keypoints are computed in-process (eager tasks) with the zero-shot model version.
   For ``--held-back`` individuals of the first species with at least 3 photos, one photo
   is kept out.
2. Starts a real Celery worker and uploads each held-back photo through the sighting
   service (as the web form does), one at a time, timing commit → candidates stored.
3. Runs ``species_evaluate`` (the ``evaluate`` command) for embedding, local and fused.

Usage:
    .venv/bin/python benchmarks/identification/pipeline.py --out benchmarks/results/pipeline.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks" / "identification"))

DATASETS = REPO.parent / "shared" / "datasets"
SPECIES = [
    ("dogfacenet", "Dog"),
    ("holstein2025_cowfaces", "Cow"),
    ("fs48_fish", "Goldfish"),
    ("chimp_faces_demo", "Chimpanzee"),
    ("manta_demo", "Manta ray"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--species", nargs="*", default=[folder for folder, _ in SPECIES])
    parser.add_argument("--held-back", type=int, default=50)
    parser.add_argument("--eval-queries", type=int, default=300)
    parser.add_argument("--database", default="wildweb_bench_pipeline")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--bulk-workers",
        type=int,
        default=0,
        help="embed imports with this many real bulk worker processes (default: in-process)",
    )
    parser.add_argument(
        "--local-method",
        choices=("sift", "xfeat"),
        default="sift",
        help="every species' keypoint matcher (extracted at import)",
    )
    args = parser.parse_args()

    from search import _use_database

    _use_database(args.database)
    os.environ["CELERY_TASK_ALWAYS_EAGER"] = "0" if args.bulk_workers else "1"
    os.environ["CELERY_KEY_PREFIX"] = f"wildweb-bench-{os.getpid()}:"
    media = Path(tempfile.mkdtemp(prefix="wildweb-bench-media-"))
    os.environ["MEDIA_ROOT"] = str(media)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from catalogue.services.imports import dataset_plan
    from identification.services.pipeline import dataset_ingest, species_register

    result: dict = {"import": {}, "held_back": [], "bulk_workers": args.bulk_workers}
    bulk = [_worker_start(media, "bulk", f"bulk{i}") for i in range(args.bulk_workers)]
    held_back: list[Path] = []  # from the first species imported
    upload_species = ""
    started_all = time.perf_counter()
    for folder, name in SPECIES:
        if folder not in args.species:
            continue
        metadata = DATASETS / folder / "metadata.csv"
        upload_species = upload_species if held_back else name
        keep, withheld = _split_rows(metadata, 0 if held_back else args.held_back)
        held_back.extend(withheld)
        filtered = media / f"{folder}.csv"
        with filtered.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(keep[0]))
            writer.writeheader()
            writer.writerows(keep)
        species = species_register(name=name)
        from identification.models import SpeciesModel
        from identification.services.models import species_model_setting

        species_model_setting(species=species)
        SpeciesModel.objects.filter(species=species).update(local_method=args.local_method)
        t0 = time.perf_counter()
        plan = dataset_plan(metadata_csv=filtered, species=species, roots=[DATASETS])
        imported = dataset_ingest(plan=plan)
        if bulk:
            _embedded_wait(species)
        seconds = time.perf_counter() - t0
        result["import"][name] = {
            "annotations": len(imported.annotations),
            "individuals": imported.individuals_created,
            "import_and_embed_s": round(seconds, 1),
            "img_per_s": round(len(imported.annotations) / seconds, 2),
        }
        print(name, result["import"][name], flush=True)
    result["gallery_annotations"] = sum(v["annotations"] for v in result["import"].values())
    result["import_total_s"] = round(time.perf_counter() - started_all, 1)
    result["import_photos_per_s"] = round(
        result["gallery_annotations"] / result["import_total_s"], 1
    )
    # Without bulk workers this process embedded and extracted keypoints itself (eager).
    result["import_peak_rss_mb"] = round(_peak_rss_kb(os.getpid()) / 1024)
    result["bulk_worker_peak_rss_mb"] = [round(_peak_rss_kb(w.pid) / 1024) for w in bulk]
    for worker in bulk:
        worker.terminate()
        worker.wait(timeout=30)
    if held_back:
        result["upload_to_candidates"] = _upload_latency(held_back, media, upload_species)
        print(result["upload_to_candidates"], flush=True)
    if args.eval_queries:
        result["quality"] = _quality(args.eval_queries)
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


def _split_rows(metadata: Path, held_back: int) -> tuple[list[dict], list[Path]]:
    rows = list(csv.DictReader(metadata.open(newline="")))
    for row in rows:
        row["path"] = str(metadata.parent / row["path"])
    if not held_back:
        return rows, []
    by_identity: dict[str, list[dict]] = {}
    for row in rows:
        by_identity.setdefault(row["identity"], []).append(row)
    eligible = [i for i, r in by_identity.items() if len(r) >= 3][:held_back]
    withheld = {sorted(by_identity[i], key=lambda r: r["path"])[-1]["path"] for i in eligible}
    return [r for r in rows if r["path"] not in withheld], [Path(p) for p in sorted(withheld)]


def _worker_start(media: Path, queues: str, name: str) -> subprocess.Popen:
    """A real Celery worker (solo pool) on this benchmark's database and broker prefix."""
    from django.db import connection

    from wildweb.celery import app, worker_command

    db = connection.settings_dict
    env = {
        **os.environ,
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "DATABASE_URL": f"postgresql://{db['USER']}:@/{db['NAME']}?host={db['HOST']}",
    }
    app.conf.task_always_eager = False
    app.conf.broker_transport_options = {
        **app.conf.broker_transport_options,
        "global_keyprefix": os.environ["CELERY_KEY_PREFIX"],
    }
    log_file = media / f"{name}.log"
    worker = subprocess.Popen(
        worker_command(queues=queues, pool="solo", quiet_cluster=True, name=f"{name}@%h"),
        cwd=REPO,
        env=env,
        stdout=log_file.open("w"),
        stderr=subprocess.STDOUT,
    )
    while "ready" not in log_file.read_text():
        time.sleep(0.2)
    return worker


def _embedded_wait(species) -> None:  # noqa: ANN001
    """Until every photo of the species has a finished (or failed) embedding job."""
    from identification.selectors.species_models import embedding_progress
    from identification.services.models import species_model_setting

    version_id = species_model_setting(species=species).model_version_id
    while True:
        progress = embedding_progress(species_id=species.pk, version_id=version_id)
        if progress["done"] + progress["failed"] >= progress["total"]:
            return
        time.sleep(0.5)


def _upload_latency(photos: list[Path], media: Path, species_name: str) -> dict:
    from catalogue.models import Species
    from identification.models import Identification

    worker = _worker_start(media, "identify,default", "upload")
    species = Species.objects.get(name=species_name)
    try:
        # Warm-up: the worker loads the model on its first task.
        _timed_upload(photos[0], species, warm=True)
        latencies, top5 = [], []
        for photo in photos[1:]:
            seconds, annotation_id = _timed_upload(photo, species)
            latencies.append(seconds)
            identity = photo.parent.name
            ranked = list(
                Identification.objects.get(annotation_id=annotation_id).candidates.values_list(
                    "individual__code", flat=True
                )[:5]
            )
            top5.append(identity in ranked)
        peak_kb = _peak_rss_kb(worker.pid)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    return {
        "worker_peak_rss_mb": round(peak_kb / 1024),
        "uploads": len(latencies),
        "p50_s": round(float(np.percentile(latencies, 50)), 3),
        "p95_s": round(float(np.percentile(latencies, 95)), 3),
        "max_s": round(float(np.max(latencies)), 3),
        "true_individual_in_top5": round(float(np.mean(top5)), 3),
    }


def _peak_rss_kb(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM), in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for process {pid}")


def _timed_upload(photo: Path, species, warm: bool = False) -> tuple[float, int]:  # noqa: ANN001
    from datetime import datetime, timezone

    from catalogue.models import Annotation
    from catalogue.services.sightings import UploadedPhoto
    from identification.models import Identification
    from identification.services.pipeline import sighting_submit

    data = photo.read_bytes()
    if warm:  # a different file, so the real photo is not a duplicate afterwards
        data += b"warm-up"  # bytes after the JPEG's end: same pixels, another sha256
    started = time.perf_counter()
    result = sighting_submit(
        submitted_by=None,
        species=species,
        photos=[UploadedPhoto(filename=photo.name, data=data)],
        observed_at=datetime(2025, 6, 1, tzinfo=timezone.utc),
    )
    annotation = Annotation.objects.get(image__encounter=result.encounter)
    while not Identification.objects.filter(annotation=annotation, state="ready").exists():
        time.sleep(0.02)
    return time.perf_counter() - started, annotation.pk


def _quality(queries: int) -> dict:
    from catalogue.models import Species
    from identification.services.evaluation import species_evaluate

    quality = {}
    for species in Species.objects.all():
        quality[species.name] = {}
        for method in ("embedding", "local", "fused", "calibrated"):
            t0 = time.perf_counter()
            report = species_evaluate(species=species, method=method, limit=queries)
            report["seconds"] = round(time.perf_counter() - t0, 1)
            quality[species.name][method] = report
            print(species.name, method, report, flush=True)
    return quality


if __name__ == "__main__":
    main()
