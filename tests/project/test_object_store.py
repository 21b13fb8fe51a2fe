"""Photos in an S3-compatible object store: a worker with no access to the web's MEDIA_ROOT
embeds and matches, and every photo link stays the permission-checked view."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Iterator

import boto3
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from moto.server import ThreadedMotoServer

from catalogue.models import Annotation, Image
from conftest import REPO_ROOT, CeleryWorker
from identification.models import EmbeddingJob, Identification
from tests.factories import UserFactory
from tests.helpers import wait_until
from tests.identification.test_pipeline import held_back_photo, import_species

BUCKET = "wildweb-photos"
KEYS = {"OBJECT_STORE_ACCESS_KEY": "test-key", "OBJECT_STORE_SECRET_KEY": "test-secret"}


@pytest.fixture
def object_store() -> Iterator[str]:
    """An S3 server in this process with an empty bucket; yields its endpoint URL."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    s3_client(endpoint).create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()


def s3_client(endpoint: str):  # noqa: ANN201
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=KEYS["OBJECT_STORE_ACCESS_KEY"],
        aws_secret_access_key=KEYS["OBJECT_STORE_SECRET_KEY"],
        region_name="us-east-1",
    )


def object_store_env(endpoint: str) -> dict[str, str]:
    return {
        "OBJECT_STORE_BUCKET": BUCKET,
        "OBJECT_STORE_ENDPOINT_URL": endpoint,
        "OBJECT_STORE_REGION": "us-east-1",
        **KEYS,
    }


def files_under(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file()]


def test_the_environment_chooses_the_object_store_and_its_links_are_the_apps_own() -> None:
    """Settings from the environment alone (as a worker on another host reads them)."""
    script = (
        "import django; django.setup()\n"
        "from django.core.files.storage import storages\n"
        "s = storages['default']\n"
        "print(type(s).__name__, s.bucket_name, s.endpoint_url, s.default_acl)\n"
        "print(s.url('images/2026/01/a b.jpg'))\n"
    )
    env = {
        "DJANGO_SETTINGS_MODULE": "wildweb.settings",
        "PATH": "/usr/bin:/bin",
        "HOME": str(REPO_ROOT),
        **object_store_env("http://minio.example:9000"),
    }
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        env={**env, "DATABASE_URL": "postgresql://u:p@h/d", "REDIS_URL": "redis://h:6379/0"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    chosen, url = result.stdout.splitlines()
    assert chosen == "PrivateS3Storage wildweb-photos http://minio.example:9000 None"
    assert url == "/media/images/2026/01/a%20b.jpg"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_worker_without_the_media_root_embeds_and_matches_from_the_object_store(
    client, settings, object_store, shared_datasets, tmp_path
) -> None:  # noqa: ANN001
    from wildweb.celery import app

    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "wildweb.storage.PrivateS3Storage",
            "OPTIONS": {
                "bucket_name": BUCKET,
                "endpoint_url": object_store,
                "region_name": "us-east-1",
                "access_key": KEYS["OBJECT_STORE_ACCESS_KEY"],
                "secret_key": KEYS["OBJECT_STORE_SECRET_KEY"],
            },
        },
    }  # Django's setting_changed handler drops the cached default_storage
    worker_media, worker_private = tmp_path / "media", tmp_path / "private"
    worker_media.mkdir(), worker_private.mkdir()
    app.control.purge()
    worker = CeleryWorker(
        env={
            **object_store_env(object_store),
            "MEDIA_ROOT": str(worker_media),
            "PRIVATE_ROOT": str(worker_private),
        }
    )
    try:
        chimps, plan = import_species(shared_datasets, "chimp_faces_demo", "Chimpanzee", 2, 2)
        wait_until(lambda: EmbeddingJob.objects.filter(state="done").count() == 4, timeout=300)
        identity = plan.new_individuals[0]
        photo = held_back_photo(shared_datasets / "chimp_faces_demo" / "metadata.csv", identity, 3)
        uploader = UserFactory(role="volunteer")
        client.force_login(uploader)
        response = client.post(
            reverse("sighting-create"),
            {
                "species": chimps.pk,
                "observed_at": "2025-06-01T08:00",
                "latitude": "",
                "longitude": "",
                "bboxes": "",
                "photos": [SimpleUploadedFile(photo.name, photo.read_bytes())],
            },
        )
        assert response.status_code == 302
        query = Annotation.objects.get(image__original_filename=photo.name)
        wait_until(
            lambda: Identification.objects.filter(annotation=query, state="ready").exists(),
            timeout=300,
        )
        image = Image.objects.get(pk=query.image_id)
        wait_until(lambda: Image.objects.get(pk=image.pk).thumbnail, timeout=120)
        image.refresh_from_db()
    except AssertionError as error:  # a wait ran out: what the worker was doing
        raise AssertionError(f"{error}\n{worker.log()[-4000:]}") from None
    finally:
        worker.stop()

    identification = Identification.objects.get(annotation=query)
    assert identification.candidates.exists()
    assert "Candidates ready" in client.get(response.url).content.decode()

    bucket = s3_client(object_store)
    stored = {item["Key"] for item in bucket.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert {image.file.name, image.thumbnail.name} <= stored
    assert len([key for key in stored if key.startswith("images/")]) == 5  # 4 gallery + 1
    assert files_under(Path(settings.MEDIA_ROOT)) == [] and files_under(worker_media) == []

    page = client.get(response.url).content.decode()
    shown = f"/media/{image.thumbnail.name}"
    assert shown in page or f"/media/{image.file.name}" in page
    assert object_store not in page and "127.0.0.1" not in page and BUCKET not in page

    original = bucket.get_object(Bucket=BUCKET, Key=image.file.name)["Body"].read()
    served = client.get(f"/media/{image.file.name}")
    assert served.status_code == 200 and b"".join(served.streaming_content) == original
    assert served["Cache-Control"] == "private, max-age=3600"
    client.logout()
    assert client.get(f"/media/{image.file.name}").status_code == 404
    assert client.get(shown).status_code == 404
