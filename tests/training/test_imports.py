"""Importing labelled data: CSV, COCO/CCT, MegaDetector, ZIP; dry run first, nothing half-done."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from catalogue.models import Annotation, Image, Individual, Species
from catalogue.services.imports import dataset_file_plan
from identification.models import EmbeddingJob, Identification
from identification.services.pipeline import dataset_ingest, species_register
from tests.helpers import jpeg_bytes
from wildweb.errors import ServiceError

pytestmark = pytest.mark.django_db


def _photos(folder: Path, count: int, size: tuple[int, int] = (80, 60)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"photo{index}.jpg"
        path.write_bytes(jpeg_bytes(size=size, color=(10 * index % 255, 90, 200 - index)))
        paths.append(path)
    return paths


def _run(*args: str) -> dict:
    out = io.StringIO()
    call_command("import_dataset", *args, "--json", stdout=out)
    return json.loads(out.getvalue())


def test_csv_import_creates_species_individuals_and_queues_embeddings(tmp_path: Path) -> None:
    paths = _photos(tmp_path / "images", 4)
    lines = ["image_id,identity,path,species"] + [
        f"i{n},{'A' if n < 2 else 'B'},images/{p.name},zebra" for n, p in enumerate(paths)
    ]
    (tmp_path / "metadata.csv").write_text("\n".join(lines) + "\n")

    dry = _run(str(tmp_path / "metadata.csv"), "--species", "Zebra", "--dry-run")
    assert dry["plan"]["new_individuals"] == 2 and dry["plan"]["images"] == 4
    assert not Species.objects.exists()  # a dry run writes nothing, not even the species

    done = _run(str(tmp_path), "--species", "Zebra")
    assert done["species_created"] and done["result"]["annotations_created"] == 4
    zebra = Species.objects.get(name="Zebra")
    codes = set(Individual.objects.filter(species=zebra).values_list("code", flat=True))
    assert codes == {"A", "B"}
    assert EmbeddingJob.objects.filter(annotation__species=zebra).count() == 4

    again = _run(str(tmp_path), "--species", "Zebra", "--dry-run")
    assert again["plan"]["existing_individuals"] == 2 and again["plan"]["new_individuals"] == 0


def test_csv_rows_without_identity_become_animals_awaiting_identification(tmp_path: Path) -> None:
    paths = _photos(tmp_path / "images", 3)
    (tmp_path / "metadata.csv").write_text(
        "image_id,identity,path,species\n"
        f"a,A,images/{paths[0].name},zebra\n"
        f"b,A,images/{paths[1].name},zebra\n"
        f"c,,images/{paths[2].name},zebra\n"
    )
    dry = _run(str(tmp_path / "metadata.csv"), "--species", "Zebra", "--dry-run")
    assert dry["plan"]["awaiting_identification"] == 1 and dry["plan"]["images"] == 3

    done = _run(str(tmp_path), "--species", "Zebra")
    assert done["result"]["annotations_created"] == 3
    unknown = Annotation.objects.get(image__original_filename=paths[2].name)
    assert unknown.individual is None
    assert unknown.identity_source == Annotation.IdentitySource.UNKNOWN
    assert Annotation.objects.filter(individual__code="A").count() == 2


def test_malformed_csv_is_rejected_with_line_numbers_and_nothing_imported(tmp_path: Path) -> None:
    paths = _photos(tmp_path / "images", 2)
    (tmp_path / "metadata.csv").write_text(
        "image_id,identity,path,species,bbox,date\n"
        f"a,A,images/{paths[0].name},zebra,,\n"
        "b,A,images/missing.jpg,zebra,,\n"
        f"c,A,images/{paths[1].name},zebra,,not-a-date\n"
        f'd,B,images/{paths[1].name},zebra,"[1, 2, 0, 5]",\n'
    )
    with pytest.raises(CommandError, match="3 invalid"):
        _run(str(tmp_path / "metadata.csv"), "--species", "Zebra")
    assert not Species.objects.exists() and not Image.objects.exists()
    species = species_register(name="Zebra")
    plan = dataset_file_plan(path=tmp_path / "metadata.csv", species=species)
    assert sorted(e.split(":")[0] for e in plan.errors) == ["line 3", "line 4", "line 5"]
    with pytest.raises(ServiceError, match="nothing was imported"):
        dataset_ingest(plan=plan)
    assert not Annotation.objects.exists()


def _coco(tmp_path: Path) -> dict:
    paths = _photos(tmp_path / "imgs", 3, size=(100, 80))
    return {
        "images": [
            {
                "id": n,
                "file_name": f"imgs/{p.name}",
                "seq_id": f"s{n // 2}",
                "datetime": "2024-05-01 10:00:00",
            }
            for n, p in enumerate(paths)
        ],
        "categories": [{"id": 0, "name": "empty"}, {"id": 1, "name": "zebra"}],
        "annotations": [
            {
                "id": 10,
                "image_id": 0,
                "category_id": 1,
                "bbox": [5, 5, 40, 30],
                "individual_id": "Z1",
            },
            {
                "id": 11,
                "image_id": 0,
                "category_id": 1,
                "bbox": [50, 40, 40, 30],
                "individual_id": "Z2",
            },
            {
                "id": 12,
                "image_id": 1,
                "category_id": 1,
                "bbox": [0, 0, 60, 60],
                "individual_id": "Z1",
            },
            {"id": 13, "image_id": 2, "category_id": 1, "bbox": [10, 10, 20, 20]},
            {"id": 14, "image_id": 2, "category_id": 0},
        ],
    }


def test_coco_camera_traps_import_keeps_boxes_individuals_and_unknowns(tmp_path: Path) -> None:
    (tmp_path / "cct.json").write_text(json.dumps(_coco(tmp_path)))
    report = _run(str(tmp_path / "cct.json"), "--species", "Zebra")
    plan = report["plan"]
    assert (
        plan["images"],
        plan["annotations"],
        plan["new_individuals"],
        plan["awaiting_identification"],
    ) == (3, 4, 2, 1)
    assert report["result"]["annotations_created"] == 4
    assert Image.objects.count() == 3  # two boxes on the first photo share it
    box = Annotation.objects.get(individual__code="Z2")
    assert (box.bbox_x, box.bbox_y, box.bbox_w, box.bbox_h) == (50, 40, 40, 30)
    unknown = Annotation.objects.get(individual__isnull=True)
    assert Identification.objects.filter(annotation=unknown).exists()


def test_malformed_coco_reports_each_entry_and_imports_nothing(tmp_path: Path) -> None:
    document = _coco(tmp_path)
    document["annotations"][0]["bbox"] = [5, 5, 400, 30]  # outside the photo
    document["annotations"][2]["image_id"] = 99
    (tmp_path / "bad.json").write_text(json.dumps(document))
    out = io.StringIO()
    with pytest.raises(CommandError, match="2 invalid"):
        call_command(
            "import_dataset", str(tmp_path / "bad.json"), "--species", "Zebra", "--json", stdout=out
        )
    errors = json.loads(out.getvalue())["plan"]["errors"]
    assert any(e.startswith("annotations[0] (id 10): the box") and "outside" in e for e in errors)
    assert any(e.startswith("annotations[2] (id 12): image_id 99") for e in errors)
    assert not Annotation.objects.exists()

    (tmp_path / "broken.json").write_text('{"images": [\n  {"id": 1,,}\n]}')
    with pytest.raises(CommandError, match="line 2, column"):
        _run(str(tmp_path / "broken.json"), "--species", "Zebra", "--format", "coco")


def test_megadetector_boxes_become_animals_awaiting_identification(tmp_path: Path) -> None:
    paths = _photos(tmp_path, 2, size=(200, 100))
    (tmp_path / "md.json").write_text(
        json.dumps(
            {
                "detection_categories": {"1": "animal", "2": "person"},
                "images": [
                    {
                        "file": paths[0].name,
                        "detections": [
                            {"category": "1", "conf": 0.9, "bbox": [0.1, 0.2, 0.5, 0.5]},
                            {"category": "2", "conf": 0.9, "bbox": [0.0, 0.0, 0.1, 0.1]},
                            {"category": "1", "conf": 0.05, "bbox": [0.6, 0.2, 0.2, 0.2]},
                        ],
                    },
                    {"file": paths[1].name, "detections": []},
                ],
            }
        )
    )
    report = _run(str(tmp_path / "md.json"), "--species", "Zebra")
    assert report["plan"]["awaiting_identification"] == 1
    annotation = Annotation.objects.get()
    assert annotation.individual is None
    assert (annotation.bbox_x, annotation.bbox_y, annotation.bbox_w, annotation.bbox_h) == (
        20,
        20,
        100,
        50,
    )
    assert Identification.objects.filter(annotation=annotation).exists()
    assert EmbeddingJob.objects.filter(annotation=annotation).exists()


def test_malformed_megadetector_output_is_rejected(tmp_path: Path) -> None:
    _photos(tmp_path, 1)
    (tmp_path / "md.json").write_text(
        json.dumps(
            {
                "images": [
                    {
                        "file": "photo0.jpg",
                        "detections": [
                            {"category": "1", "conf": 0.9, "bbox": [0.5, 0.5, 0.9, 0.2]}
                        ],
                    },
                    {
                        "file": "gone.jpg",
                        "detections": [
                            {"category": "1", "conf": 0.9, "bbox": [0.1, 0.1, 0.2, 0.2]}
                        ],
                    },
                ]
            }
        )
    )
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command(
            "import_dataset",
            str(tmp_path / "md.json"),
            "--species",
            "Zebra",
            "--format",
            "megadetector",
            "--json",
            stdout=out,
        )
    errors = json.loads(out.getvalue())["plan"]["errors"]
    assert errors[0].startswith("images[0].detections[0]")
    assert errors[1].startswith("images[1]") and "no file" in errors[1]
    assert not Annotation.objects.exists()


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_zip_of_folders_per_individual_imports_with_limits(tmp_path: Path) -> None:
    members = {
        f"dataset/{who}/{n}.jpg": jpeg_bytes(color=(n * 40, ord(who[0]), 90))
        for who in ("ann", "bob", "cat")
        for n in range(3)
    }
    archive = _zip(tmp_path / "animals.zip", members)
    report = _run(
        str(archive), "--species", "Zebra", "--max-individuals", "2", "--images-per-individual", "2"
    )
    assert report["plan"]["new_individuals"] == 2 and report["result"]["annotations_created"] == 4
    assert set(Individual.objects.values_list("code", flat=True)) == {"ann", "bob"}


def test_malformed_zip_is_rejected_with_entry_names(tmp_path: Path) -> None:
    archive = _zip(
        tmp_path / "bad.zip",
        {
            "ann/1.jpg": jpeg_bytes(),
            "loose.jpg": jpeg_bytes(),
            "bob/notes.txt": b"hello",
            "bob/2.jpg": b"not a jpeg",
        },
    )
    out = io.StringIO()
    with pytest.raises(CommandError, match="3 invalid"):
        call_command("import_dataset", str(archive), "--species", "Zebra", "--json", stdout=out)
    errors = json.loads(out.getvalue())["plan"]["errors"]
    assert any(e.startswith("loose.jpg: expected <individual>/<photo>") for e in errors)
    assert any(e.startswith("bob/notes.txt: not a photo") for e in errors)
    assert any(e.startswith("bob/2.jpg") and "not a photo we can read" in e for e in errors)
    assert not Species.objects.exists() and not Annotation.objects.exists()
    (tmp_path / "fake.zip").write_bytes(b"PK nope")
    with pytest.raises(CommandError, match="not a ZIP"):
        _run(str(tmp_path / "fake.zip"), "--species", "Zebra")


def test_csv_import_keeps_each_photos_viewpoint(tmp_path: Path) -> None:
    paths = _photos(tmp_path / "images", 3)
    lines = ["image_id,identity,path,species,viewpoint"] + [
        f"i{n},A,images/{p.name},zebra,{side}"
        for n, (p, side) in enumerate(zip(paths, ["left", "right", ""]))
    ]
    (tmp_path / "metadata.csv").write_text("\n".join(lines) + "\n")
    _run(str(tmp_path / "metadata.csv"), "--species", "Zebra")
    assert sorted(Annotation.objects.values_list("viewpoint", flat=True)) == ["", "left", "right"]
