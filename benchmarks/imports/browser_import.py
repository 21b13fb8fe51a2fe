"""Time of a 1,000-photo ZIP import through the training page's browser path.

Builds a ZIP in the shared-dataset layout (``metadata.csv`` + ``images/<id>/<file>.jpg``)
from the first ``--photos`` rows of a shared dataset, then, in a fresh database, posts it
to the page's upload view (Django's multipart parser streams it to a temporary file, the
view copies it chunk by chunk and runs the dry run: unpack, open every photo) and then to
the confirm view (plan again, import every row in one transaction). Both requests go
through Django's full request stack with the test client, so the time is the server's;
the browser's network transfer is not included. Embedding is queued under a private key
prefix, not run, and the queued messages are deleted afterwards.

Usage:
    nice -n 10 .venv/bin/python benchmarks/imports/browser_import.py --photos 1000
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
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
    parser.add_argument("--photos", type=int, default=1000)
    parser.add_argument("--database", default="wildweb_bench_import")
    args = parser.parse_args()

    from search import _use_database

    _use_database(args.database)
    prefix = f"wildweb-bench-import-{os.getpid()}:"
    os.environ["CELERY_KEY_PREFIX"] = prefix
    work = Path(tempfile.mkdtemp(prefix="wildweb-bench-import-"))
    os.environ["MEDIA_ROOT"] = str(work / "media")
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client
    from django.urls import reverse

    from catalogue.models import Annotation
    from identification.services.pipeline import species_register
    from tests.factories import UserFactory

    call_command("migrate", verbosity=0)
    archive = work / "dataset.zip"
    count = _zip(DATASETS / args.dataset, args.photos, archive)
    zip_mb = round(archive.stat().st_size / 1e6, 1)
    species = species_register(name="Benchmark")
    client = Client()
    client.force_login(UserFactory(role="admin"))

    started = time.perf_counter()
    with open(archive, "rb") as handle:
        dry = client.post(reverse("training-import", args=[species.pk]), {"file": handle})
    dry_s = time.perf_counter() - started
    assert dry.status_code == 200 and b'id="import-report"' in dry.content, dry.content[-2000:]
    token = re.search(rb"/([0-9a-f]{32})/", dry.content)[1].decode()
    started = time.perf_counter()
    done = client.post(reverse("training-import-confirm", args=[species.pk, token]), {})
    confirm_s = time.perf_counter() - started
    assert done.status_code == 302
    created = Annotation.objects.filter(species=species).count()
    assert created == count, (created, count)

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
                "upload_and_dry_run_s": round(dry_s, 1),
                "confirm_import_s": round(confirm_s, 1),
                "total_s": round(dry_s + confirm_s, 1),
                "photos_per_s": round(count / (dry_s + confirm_s), 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
