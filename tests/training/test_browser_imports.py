"""Importing from the browser: every layout the command line accepts, dry run then confirm."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from django.urls import reverse

from catalogue.models import Annotation, Image
from identification.services.pipeline import species_register
from tests.factories import UserFactory
from tests.helpers import imports_worker_run, jpeg_bytes
from training.models import DatasetImport

pytestmark = pytest.mark.django_db


def _upload(name: str, members: dict[str, bytes] | bytes):  # noqa: ANN202
    from django.core.files.uploadedfile import SimpleUploadedFile

    if isinstance(members, bytes):
        return SimpleUploadedFile(name, members)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for member, data in members.items():
            archive.writestr(member, data)
    return SimpleUploadedFile(name, buffer.getvalue())


def _layouts() -> dict[str, tuple[dict, int]]:
    """Every layout the command line accepts, as the browser sends it: fields, animals."""
    photos = {
        f"images/{who}/{n}.jpg": jpeg_bytes(size=(90, 70), color=(n * 60, ord(who[0]), 9))
        for who in ("ann", "bob")
        for n in range(2)
    }
    names = sorted(photos)
    csv_text = (
        "image_id,identity,path,viewpoint,encounter,date,bbox\n"
        + "".join(
            f'{n},{p.split("/")[1]},{p},left,e{n // 2},2024-0{n + 1}-01,"[1, 2, 50, 40]"\n'
            for n, p in enumerate(names)
        )
    ).encode()
    coco = json.dumps(
        {
            "images": [{"id": n, "file_name": p} for n, p in enumerate(names)],
            "categories": [{"id": 1, "name": "zebra"}],
            "annotations": [
                {
                    "id": n,
                    "image_id": n,
                    "category_id": 1,
                    "bbox": [0, 0, 30, 30],
                    "individual_id": p.split("/")[1],
                }
                for n, p in enumerate(names)
            ],
        }
    ).encode()
    megadetector = json.dumps(
        {
            "images": [
                {
                    "file": p,
                    "detections": [{"category": "1", "conf": 0.9, "bbox": [0, 0, 0.5, 0.5]}],
                }
                for p in names
            ]
        }
    ).encode()
    only_photos = {p: d for p, d in photos.items()}
    return {
        "zip-with-metadata-csv": (
            {"file": _upload("a.zip", {"metadata.csv": csv_text, **photos})},
            4,
        ),
        "zip-in-a-wrapping-folder": (
            {
                "file": _upload(
                    "a.zip",
                    {"set/metadata.csv": csv_text, **{f"set/{p}": d for p, d in photos.items()}},
                )
            },
            4,
        ),
        "zip-with-coco-json": ({"file": _upload("a.zip", {"coco.json": coco, **photos})}, 4),
        "zip-of-folders": (
            {"file": _upload("a.zip", {p.removeprefix("images/"): d for p, d in photos.items()})},
            4,
        ),
        "csv-with-photos-zip": (
            {"file": _upload("metadata.csv", csv_text), "photos": _upload("p.zip", only_photos)},
            4,
        ),
        "coco-with-photos-zip": (
            {"file": _upload("cct.json", coco), "photos": _upload("p.zip", only_photos)},
            4,
        ),
        "megadetector-with-photos-zip": (
            {"file": _upload("md.json", megadetector), "photos": _upload("p.zip", only_photos)},
            4,
        ),
    }


@pytest.mark.parametrize("layout", list(_layouts()))
def test_every_layout_of_the_command_line_imports_from_the_browser(client, layout) -> None:  # noqa: ANN001
    client.force_login(UserFactory(role="admin"))
    species = species_register(name="Zebra")
    fields, animals = _layouts()[layout]
    client.post(reverse("training-import", args=[species.pk]), fields)
    imports_worker_run()  # the dry run
    job = DatasetImport.objects.get()
    assert job.report["errors"] == [], layout
    assert job.report["annotations"] == animals
    client.post(reverse("training-import-confirm", args=[job.pk]))
    imports_worker_run()
    page = client.get(reverse("training-import-detail", args=[job.pk]))
    assert f"Imported {animals} animals" in page.content.decode()
    assert Annotation.objects.filter(species=species).count() == animals
    if layout.endswith("metadata-csv") or layout.startswith(("csv", "zip-in")):
        box = Annotation.objects.get(image__original_filename="0.jpg", individual__code="ann")
        assert (box.viewpoint, box.bbox_w, box.bbox_h) == ("left", 50, 40)
        assert box.image.encounter.observed_at.month == 1
        assert Image.objects.filter(encounter=box.image.encounter).count() == 2  # e0
