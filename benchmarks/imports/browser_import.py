"""Time of a ZIP import through the training page's browser path, as a job.

Builds a ZIP in the shared-dataset layout (``metadata.csv`` + ``images/<id>/<file>.jpg``)
from the first ``--photos`` rows of a shared dataset, then, in a fresh database, posts it
to the page's upload view (Django's multipart parser streams it to a temporary file, the
view copies it chunk by chunk and creates the import job) and times how long the upload
request takes to answer. Then it does the bulk worker's steps in this process, timed: the
dry run (unpack, open every photo), the confirm request, and the store (plan again, import
every row in one transaction). Requests go through Django's full request stack with the
test client, so the times are the server's; the browser's network transfer is not
included. Embedding is queued under a private key prefix, not run, and the queued messages
are deleted afterwards.

Usage:
    nice -n 10 .venv/bin/python benchmarks/imports/browser_import.py --photos 2000
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks" / "identification"))
DATASETS = REPO.parent / "shared" / "datasets"


def _zip(dataset: Path, photos: int, target: Path) -> int:
    with open(dataset / "metadata.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))[:photos]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    with zipfile.ZipFile(target, "w") as archive:  # JPEGs do not compress further
        archive.writestr("metadata.csv", text.getvalue())
        for row in rows:
            archive.write(dataset / row["path"], row["path"])
    return len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="holstein2025_cowfaces")
    parser.add_argument("--photos", type=int, default=2000)
    parser.add_argument("--database", default="wildweb_bench_import")
    args = parser.parse_args()

    from search import _use_database

    _use_database(args.database)
    prefix = f"wildweb-bench-import-{os.getpid()}:"
    os.environ["CELERY_KEY_PREFIX"] = prefix
    work = Path(tempfile.mkdtemp(prefix="wildweb-bench-import-"))
    os.environ["MEDIA_ROOT"] = str(work / "media")
    os.environ["PRIVATE_ROOT"] = str(work / "private")
    # DEBUG=0 (no query log); the test client speaks plain HTTP to "testserver".
    os.environ.update(ALLOWED_HOSTS="testserver", SECURE_SSL_REDIRECT="0")
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client
    from django.urls import reverse

    from catalogue.models import Annotation
    from identification.services.pipeline import species_register
    from tests.factories import UserFactory
    from training.models import DatasetImport
    from training.services.imports import dataset_import_execute

    call_command("migrate", verbosity=0)
    archive = work / "dataset.zip"
    count = _zip(DATASETS / args.dataset, args.photos, archive)
    zip_mb = round(archive.stat().st_size / 1e6, 1)
    species = species_register(name="Benchmark")
    client = Client()
    client.force_login(UserFactory(role="admin"))

    def timed(step):  # noqa: ANN001, ANN202
        started = time.perf_counter()
        answer = step()
        return answer, time.perf_counter() - started

    with open(archive, "rb") as handle:
        upload, upload_s = timed(
            lambda: client.post(reverse("training-import", args=[species.pk]), {"file": handle})
        )
    assert upload.status_code == 302, (upload.status_code, upload.headers, upload.content[-2000:])
    job = DatasetImport.objects.get()
    _, dry_s = timed(lambda: dataset_import_execute(import_id=job.pk))
    job.refresh_from_db()
    assert job.state == DatasetImport.State.AWAITING_CONFIRMATION, job.error
    confirm, confirm_s = timed(
        lambda: client.post(reverse("training-import-confirm", args=[job.pk]), {})
    )
    assert confirm.status_code == 302
    _, store_s = timed(lambda: dataset_import_execute(import_id=job.pk))
    created = Annotation.objects.filter(species=species).count()
    assert created == count, (created, count, DatasetImport.objects.get().error)

    import redis
    from django.conf import settings

    connection = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    for key in connection.scan_iter(f"{prefix}*"):
        connection.delete(key)
    shutil.rmtree(work, ignore_errors=True)
    print(
        json.dumps(
            {
                "dataset": args.dataset,
                "photos": count,
                "zip_mb": zip_mb,
                "upload_request_s": round(upload_s, 2),
                "worker_dry_run_s": round(dry_s, 1),
                "confirm_request_s": round(confirm_s, 2),
                "worker_store_s": round(store_s, 1),
                "total_s": round(upload_s + dry_s + confirm_s + store_s, 1),
                "photos_per_s": round(count / (upload_s + dry_s + confirm_s + store_s), 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
