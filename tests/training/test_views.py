"""Admin pages and API of training: add a species, import with a dry run, run pages."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from catalogue.models import Annotation, Species
from identification.services.models import zero_shot_version
from identification.services.pipeline import species_register
from tests.factories import UserFactory
from tests.helpers import imports_worker_run, jpeg_bytes
from training.models import DatasetImport, TrainingRun

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):  # noqa: ANN001, ANN201
    client.force_login(UserFactory(role="admin"))
    return client


def _zip_upload(members: dict[str, bytes]) -> SimpleUploadedFile:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return SimpleUploadedFile("animals.zip", buffer.getvalue(), content_type="application/zip")


def test_admin_adds_a_species_from_the_page(admin_client) -> None:  # noqa: ANN001
    response = admin_client.post(
        reverse("training-species-new"),
        {"name": "Reef manta", "sensitive": "on", "viewpoints": "ventral, dorsal"},
    )
    species = Species.objects.get(name="Reef manta")
    assert response.status_code == 302 and species.sensitive
    assert species.viewpoints == ["ventral", "dorsal"]
    page = admin_client.get(response.url)
    assert b"Import labelled photos" in page.content and b"Start training" in page.content


def test_volunteer_cannot_open_training_pages(client) -> None:  # noqa: ANN001
    client.force_login(UserFactory(role="volunteer"))
    assert client.get(reverse("training-index")).status_code == 403
    assert client.post(reverse("api-training-species"), {"name": "X"}).status_code == 403


def test_api_creates_species(admin_client) -> None:  # noqa: ANN001
    response = admin_client.post(
        reverse("api-training-species"),
        {"name": "Dog", "viewpoints": ["face"]},
        content_type="application/json",
    )
    assert response.status_code == 201 and response.json()["name"] == "Dog"
    again = admin_client.post(
        reverse("api-training-species"), {"name": "Dog"}, content_type="application/json"
    )
    assert again.status_code == 400 and "already exists" in again.json()["detail"]


def test_zip_import_shows_dry_run_then_imports_on_confirm(admin_client) -> None:  # noqa: ANN001
    species = species_register(name="Zebra")
    upload = _zip_upload(
        {
            f"{who}/{n}.jpg": jpeg_bytes(color=(n * 50, ord(who[0]), 7))
            for who in ("ann", "bob")
            for n in range(2)
        }
    )
    uploaded = admin_client.post(
        reverse("training-import", args=[species.pk]), {"file": upload, "file_format": ""}
    )
    imports_worker_run()
    report = admin_client.get(uploaded.url)
    assert report.status_code == 200 and b"Nothing has been written yet" in report.content
    assert not Annotation.objects.exists()
    job = report.context["job"]
    assert job.report["new_individuals"] == 2
    done = admin_client.post(reverse("training-import-confirm", args=[job.pk]), {})
    imports_worker_run()
    assert done.status_code == 302 and Annotation.objects.count() == 4


def test_discarding_an_upload_says_so_and_a_gone_one_says_why(admin_client) -> None:  # noqa: ANN001
    species = species_register(name="Zebra")
    admin_client.post(
        reverse("training-import", args=[species.pk]),
        {"file": _zip_upload({"ann/1.jpg": jpeg_bytes()}), "file_format": ""},
    )
    imports_worker_run()
    job = DatasetImport.objects.get()
    url = reverse("training-import-confirm", args=[job.pk])
    first = admin_client.post(url, {"discard": "1"}, follow=True)
    assert [str(m) for m in first.context["messages"]] == ["The upload was discarded."]
    # Confirmed afterwards (a second tab, the back button): the page says why not.
    again = admin_client.post(url, follow=True)
    told = [(m.level_tag, str(m)) for m in again.context["messages"]]
    assert told == [("error", "This import is not waiting for a confirmation any more.")]
    assert b"Discarded" in again.content
    imports_worker_run()
    assert not Annotation.objects.exists()


def test_api_import_rejects_malformed_file_and_imports_a_good_one(admin_client) -> None:  # noqa: ANN001
    species = species_register(name="Zebra")
    url = reverse("api-training-import", args=[species.pk])
    bad = admin_client.post(url, {"file": _zip_upload({"loose.jpg": jpeg_bytes()})})
    assert bad.status_code == 202 and bad.json()["state"] == "queued"
    bad_url = reverse("api-training-import-detail", args=[bad.json()["id"]])
    imports_worker_run()
    checked = admin_client.get(bad_url).json()
    assert checked["state"] == "failed" and "nothing was imported" in checked["error"]
    assert checked["report"]["errors"][0].startswith("loose.jpg")
    refused = admin_client.post(bad_url, {"action": "confirm"}, content_type="application/json")
    assert refused.status_code == 400 and "not waiting" in refused.json()["detail"]
    good = admin_client.post(
        url,
        {
            "file": _zip_upload(
                {"ann/1.jpg": jpeg_bytes(), "ann/2.jpg": jpeg_bytes(color=(1, 2, 3))}
            )
        },
    )
    good_url = reverse("api-training-import-detail", args=[good.json()["id"]])
    imports_worker_run()
    confirmed = admin_client.post(good_url, {"action": "confirm"}, content_type="application/json")
    assert confirmed.status_code == 202
    imports_worker_run()
    stored = admin_client.get(good_url).json()
    assert stored["state"] in ("embedding", "done") and stored["result"]["annotations_created"] == 2
    listed = admin_client.get(url).json()
    assert [job["id"] for job in listed] == [good.json()["id"], bad.json()["id"]]


def test_run_page_shows_progress_chart_report_and_json_download(admin_client) -> None:  # noqa: ANN001
    species = species_register(name="Zebra")
    report = {
        "species": "Zebra",
        "before": {"top1": 0.5, "top5": 1, "mAP": 0.6},
        "after": {"top1": 0.75, "top5": 1, "mAP": 0.8},
        "zero_shot": {"top1": 0.5, "top5": 1, "mAP": 0.6},
        "recommended_ranking_method": "embedding",
        "per_species": {},
    }
    run = TrainingRun.objects.create(
        species=species,
        base_version=zero_shot_version(),
        status=TrainingRun.Status.RUNNING,
        progress=42,
        epoch=2,
        hyperparameters={"epochs": 4, "image_size": 96},
        history=[
            {"step": 1, "epoch": 1, "loss": 9.0},
            {"step": 4, "epoch": 2, "loss": 6.0, "validation_top1": 0.6},
        ],
    )
    page = admin_client.get(reverse("training-run", args=[run.pk]))
    assert b'hx-trigger="every 2s"' in page.content and b"<polyline" in page.content
    assert b'value="42"' in page.content
    run.status, run.report = TrainingRun.Status.SUCCEEDED, report
    run.save()
    page = admin_client.get(reverse("training-run", args=[run.pk]))
    assert b"hx-trigger" not in page.content and b"Promote" in page.content
    download = admin_client.get(reverse("training-run-report", args=[run.pk]))
    assert json.loads(download.content)["after"]["top1"] == 0.75
    assert "attachment" in download["Content-Disposition"]


def test_starting_a_run_without_enough_individuals_says_why(admin_client) -> None:  # noqa: ANN001
    species = species_register(name="Zebra")
    response = admin_client.post(
        reverse("training-run-start", args=[species.pk]),
        {"mode": "new-data-only", "engine_mode": "cached"},
        follow=True,
    )
    assert b"training needs" in response.content
    assert not TrainingRun.objects.exists()


def test_a_diverged_run_answers_strict_json_on_the_api(admin_client) -> None:  # noqa: ANN001
    run = TrainingRun.objects.create(
        species=species_register(name="Zebra"),
        base_version=zero_shot_version(),
        status=TrainingRun.Status.FAILED,
        current_loss=float("nan"),
    )
    api = admin_client.get(reverse("api-training-run", args=[run.pk]))
    assert api.status_code == 200
    body = json.loads(api.content, parse_constant=lambda name: pytest.fail(f"{name} in JSON"))
    assert body["current_loss"] is None
