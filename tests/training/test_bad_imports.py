"""The bad-input catalogue of imports: CSV, COCO, MegaDetector and ZIP, command line and web.

Each bad dataset is refused with a message naming what is wrong, and nothing is written:
no rows, no photo files, and for a refused archive nothing unpacked.
"""

from __future__ import annotations

import io
import json
import stat
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse

from catalogue.models import Annotation, Encounter, Image, Individual
from catalogue.services.imports import dataset_file_plan
from identification.services.pipeline import dataset_ingest, species_register
from tests.factories import UserFactory
from tests.helpers import imports_worker_run, jpeg_bytes
from wildweb.errors import ServiceError

pytestmark = pytest.mark.django_db


def _photo(path: Path, shade: int = 0, size: tuple[int, int] = (100, 80)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jpeg_bytes(size=size, color=(shade, 120, 200 - shade)))
    return path


def _csv(folder: Path, rows: list[str], header: str = "image_id,identity,path,bbox,date") -> Path:
    _photo(folder / "images" / "a.jpg", 10)
    _photo(folder / "images" / "b.jpg", 20)
    (folder / "metadata.csv").write_text("\n".join([header, *rows]) + "\n")
    return folder / "metadata.csv"


def _coco(folder: Path, annotation: dict, file_name: str = "images/a.jpg") -> Path:
    _photo(folder / "images" / "a.jpg", 30)
    document = {
        "images": [{"id": 1, "file_name": file_name}],
        "categories": [{"id": 1, "name": "zebra"}],
        "annotations": [{"id": 5, "image_id": 1, "category_id": 1, **annotation}],
    }
    (folder / "coco.json").write_text(json.dumps(document))  # NaN is written as NaN
    return folder / "coco.json"


def _megadetector(folder: Path, bbox: list, file: str = "a.jpg") -> Path:
    _photo(folder / "a.jpg", 40)
    (folder / "md.json").write_text(
        json.dumps(
            {
                "images": [
                    {"file": file, "detections": [{"category": "1", "conf": 0.9, "bbox": bbox}]}
                ]
            }
        )
    )
    return folder / "md.json"


def _zip(folder: Path, members: dict[str, bytes]) -> Path:
    path = folder / "upload.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _zip_with_link(folder: Path) -> Path:
    """A ZIP whose photo is a symbolic link (as ``zip --symlinks`` stores it) to a server file."""
    path = folder / "upload.zip"
    link = zipfile.ZipInfo("ann/1.jpg")
    link.create_system = 3  # Unix, whose mode bits say "link"
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("ann/2.jpg", jpeg_bytes())
        archive.writestr(link, "/etc/passwd")
    return path


def _outside(folder: Path) -> Path:
    return _photo(folder.parent / f"{folder.name}-elsewhere" / "secret.jpg", 50)


# (case id, builder(tmp folder) -> dataset file, a piece of the expected message)
CASES: list[tuple[str, Callable[[Path], Path], str]] = [
    (
        "csv-parent-path",
        lambda d: _csv(d, [f"1,A,../{_outside(d).parent.name}/secret.jpg,,"]),
        "outside the dataset",
    ),
    ("csv-etc-passwd", lambda d: _csv(d, ["1,A,/etc/passwd,,"]), "outside the dataset"),
    (
        "csv-absolute-photo",
        lambda d: _csv(d, [f"1,A,{_outside(d)},,"]),
        "lies outside the dataset; paths must stay inside the uploaded archive or dataset "
        "folder, or inside a server folder listed in the IMPORT_ROOTS setting",
    ),
    ("csv-missing-photo", lambda d: _csv(d, ["1,A,images/gone.jpg,,"]), "no file"),
    ("csv-nan-bbox", lambda d: _csv(d, ['1,A,images/a.jpg,"NaN,0,10,10",']), "finite"),
    ("csv-negative-bbox", lambda d: _csv(d, ['1,A,images/a.jpg,"[-1,0,10,10]",']), "outside"),
    ("csv-bbox-outside", lambda d: _csv(d, ['1,A,images/a.jpg,"[90,0,50,10]",']), "outside"),
    ("csv-zero-bbox", lambda d: _csv(d, ['1,A,images/a.jpg,"[1,2,0,5]",']), "smaller than"),
    ("csv-date-year-1", lambda d: _csv(d, ["1,A,images/a.jpg,,0001-01-01"]), "1900"),
    ("csv-date-year-9999", lambda d: _csv(d, ["1,A,images/a.jpg,,9999-01-01"]), "1900"),
    ("csv-date-garbage", lambda d: _csv(d, ["1,A,images/a.jpg,,31/31/2020"]), "ISO date"),
    (
        "csv-missing-columns",
        lambda d: _csv(d, ["A,images/a.jpg"], header="identity,path"),
        "missing column",
    ),
    (
        "csv-binary",
        lambda d: (d / "metadata.csv").write_bytes(b"\x00\x01PK\x00") and d / "metadata.csv",
        "not text",
    ),
    (
        "csv-oversized-photo",
        lambda d: (
            _csv(d, ["1,A,images/big.jpg,,"]),
            (d / "images" / "big.jpg").write_bytes(bytes(3_000_000)),
        )[0],
        "the limit is",
    ),
    (
        "csv-not-an-image",
        lambda d: (_csv(d, ["1,A,images/c.jpg,,"]), (d / "images" / "c.jpg").write_bytes(b"%PDF"))[
            0
        ],
        "not a photo",
    ),
    ("coco-nan-bbox", lambda d: _coco(d, {"bbox": [float("nan"), 0, 10, 10]}), "finite"),
    ("coco-bbox-outside", lambda d: _coco(d, {"bbox": [0, 0, 500, 10]}), "outside"),
    (
        "coco-nul-in-path",
        lambda d: _coco(d, {}, file_name="images/a\u0000.jpg"),
        "not a usable path",
    ),
    (
        "coco-parent-path",
        lambda d: _coco(d, {}, file_name="../../etc/passwd"),
        "outside the dataset",
    ),
    ("megadetector-nan-bbox", lambda d: _megadetector(d, [float("nan"), 0, 0.1, 0.1]), "finite"),
    ("megadetector-bbox-outside", lambda d: _megadetector(d, [0.5, 0.5, 0.9, 0.2]), "outside"),
    (
        "megadetector-absolute-path",
        lambda d: _megadetector(d, [0, 0, 0.5, 0.5], file="/etc/hostname"),
        "outside",
    ),
    ("zip-parent-member", lambda d: _zip(d, {"../evil/1.jpg": jpeg_bytes()}), "unsafe paths"),
    ("zip-absolute-member", lambda d: _zip(d, {"/tmp/evil/1.jpg": jpeg_bytes()}), "unsafe paths"),
    ("zip-symlink-member", _zip_with_link, "the archive holds symbolic links"),
    ("zip-bomb", lambda d: _zip(d, {"ann/big.jpg": bytes(3_000_000)}), "limit is"),
    ("zip-corrupt-photo", lambda d: _zip(d, {"ann/1.jpg": jpeg_bytes()[:300]}), "damaged"),
    (
        "zip-csv-outside-path",
        lambda d: _zip(
            d, {"metadata.csv": b"image_id,identity,path\n1,A,/etc/passwd\n", "a.jpg": jpeg_bytes()}
        ),
        "outside the dataset",
    ),
    ("not-a-zip", lambda d: (d / "fake.zip").write_bytes(b"PK no") and d / "fake.zip", "not a ZIP"),
    (
        "unknown-format",
        lambda d: (d / "notes.txt").write_text("hi") and d / "notes.txt",
        "Accepted",
    ),
]
CASE_IDS = [case[0] for case in CASES]


def _nothing_written(settings) -> None:  # noqa: ANN001
    assert not Encounter.objects.exists() and not Image.objects.exists()
    assert not Annotation.objects.exists() and not Individual.objects.exists()
    assert [p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file()] == []


@pytest.fixture(autouse=True)
def _small_limits(settings) -> None:  # noqa: ANN001
    settings.IMPORT_MAX_UNPACKED_BYTES = 2_000_000
    settings.MAX_UPLOAD_BYTES = 2_000_000


@pytest.mark.parametrize(("case", "build", "message"), CASES, ids=CASE_IDS)
def test_bad_dataset_on_the_command_line_is_refused_and_writes_nothing(
    tmp_path,
    settings,
    case,
    build,
    message,  # noqa: ANN001
) -> None:
    path = build(tmp_path / "data" if (tmp_path / "data").mkdir() is None else tmp_path)
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError) as refused:
        call_command(
            "import_dataset", str(path), "--species", "Zebra", "--json", stdout=out, stderr=err
        )
    said = str(refused.value) + out.getvalue()
    assert message in said, (case, said)
    _nothing_written(settings)


@pytest.mark.parametrize(
    ("case", "build", "message"),
    [c for c in CASES if c[0].startswith(("zip", "not-a", "unknown"))],
    ids=[i for i in CASE_IDS if i.startswith(("zip", "not-a", "unknown"))],
)
def test_bad_dataset_through_the_web_page_is_refused_and_writes_nothing(
    client,
    tmp_path,
    settings,
    case,
    build,
    message,  # noqa: ANN001
) -> None:
    client.force_login(UserFactory(role="admin"))
    species = species_register(name="Zebra")
    path = build(tmp_path)
    response = client.post(
        reverse("training-import", args=[species.pk]),
        {"file": SimpleUploadedFile(path.name, path.read_bytes())},
    )
    assert response.status_code == 302, case  # to the import's page: a worker checks the file
    imports_worker_run()
    page = client.get(response.url)
    assert message in page.content.decode(), case
    assert "Failed" in page.content.decode(), case
    assert not Image.objects.exists() and not Annotation.objects.exists()
    media = Path(settings.MEDIA_ROOT)
    unpacked = [p for p in media.rglob("*") if p.is_file() and "unpacked" in p.parts]
    if case in ("zip-bomb", "zip-parent-member", "zip-absolute-member"):
        assert unpacked == []  # refused before a byte was unpacked


def test_latin1_csv_is_read_with_its_accents(tmp_path) -> None:  # noqa: ANN001
    _photo(tmp_path / "images" / "a.jpg")
    (tmp_path / "metadata.csv").write_bytes(
        "image_id,identity,path,viewpoint\n1,Zoë,images/a.jpg,côté\n".encode("latin-1")
    )
    out = io.StringIO()
    call_command("import_dataset", str(tmp_path), "--species", "Zebra", "--json", stdout=out)
    assert Individual.objects.get().code == "Zoë"
    assert Annotation.objects.get().viewpoint == "côté"


def test_a_bare_csv_uploaded_in_the_browser_says_it_brings_no_photos(client, tmp_path) -> None:  # noqa: ANN001
    client.force_login(UserFactory(role="admin"))
    species = species_register(name="Zebra")
    metadata = _csv(tmp_path, ["1,A,images/a.jpg,,"])
    response = client.post(
        reverse("training-import", args=[species.pk]),
        {"file": SimpleUploadedFile("metadata.csv", metadata.read_bytes())},
    )
    imports_worker_run()
    page = client.get(response.url)
    assert "a CSV or JSON file alone brings no images" in page.content.decode()


def test_a_photo_already_stored_under_another_species_is_reported_not_a_500(
    tmp_path,
    client,  # noqa: ANN001
) -> None:
    metadata = _csv(tmp_path, ["1,A,images/a.jpg,,", "2,B,images/b.jpg,,"])
    call_command("import_dataset", str(metadata), "--species", "Horse", stdout=io.StringIO())
    _photo(tmp_path / "images" / "c.jpg", 70)
    metadata.write_text("image_id,identity,path\n1,A,images/a.jpg\n3,C,images/c.jpg\n")

    out = io.StringIO()
    call_command("import_dataset", str(metadata), "--species", "Zebra", "--json", stdout=out)
    report = json.loads(out.getvalue())
    assert report["plan"]["duplicate_photos"] == 1
    assert "already in the catalogue (Horse" in report["plan"]["duplicates"][0]
    assert report["result"] == {
        "annotations_created": 1,
        "individuals_created": 1,
        "duplicates_skipped": 1,
    }

    client.force_login(UserFactory(role="admin"))
    zebra = Individual.objects.get(code="C").species
    upload = _zip(
        tmp_path,
        {
            "metadata.csv": metadata.read_bytes(),
            "images/a.jpg": (tmp_path / "images/a.jpg").read_bytes(),
            "images/c.jpg": (tmp_path / "images/c.jpg").read_bytes(),
        },
    )
    response = client.post(
        reverse("api-training-import", args=[zebra.pk]),
        {"file": SimpleUploadedFile("u.zip", upload.read_bytes())},
    )
    assert response.status_code == 202 and response.json()["state"] == "queued"
    detail = reverse("api-training-import-detail", args=[response.json()["id"]])
    imports_worker_run()
    planned = client.get(detail).json()
    assert planned["state"] == "awaiting" and planned["report"]["duplicate_photos"] == 2
    confirm = client.post(detail, {"action": "confirm"}, content_type="application/json")
    assert confirm.status_code == 202 and confirm.json()["state"] == "storing"
    imports_worker_run()
    assert client.get(detail).json()["result"]["annotations_created"] == 0


def test_an_import_that_fails_half_way_leaves_no_row_and_no_file(tmp_path, settings) -> None:  # noqa: ANN001
    rows = []
    for n in range(101):
        _photo(tmp_path / "images" / f"{n}.jpg", n, size=(100 + n, 80))
        rows.append(f"{n},I{n % 7},images/{n}.jpg")
    (tmp_path / "metadata.csv").write_text("image_id,identity,path\n" + "\n".join(rows) + "\n")
    species = species_register(name="Zebra")
    plan = dataset_file_plan(path=tmp_path / "metadata.csv", species=species)
    assert not plan.errors and len(plan.rows) == 101
    (tmp_path / "images" / "99.jpg").write_bytes(b"changed after the dry run")
    with pytest.raises(ServiceError, match="Nothing was imported"):
        dataset_ingest(plan=plan)
    assert not Image.objects.exists() and not Annotation.objects.exists()
    assert not Individual.objects.exists() and not Encounter.objects.exists()
    assert [p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file()] == []


def test_photos_in_an_import_root_may_be_named_by_absolute_path(tmp_path, settings) -> None:  # noqa: ANN001
    photo = _outside(tmp_path / "data")
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "metadata.csv").write_text(f"image_id,identity,path\n1,A,{photo}\n")
    settings.IMPORT_ROOTS = [str(photo.parent)]
    call_command(
        "import_dataset", str(tmp_path / "data"), "--species", "Zebra", stdout=io.StringIO()
    )
    assert Annotation.objects.get().individual.code == "A"


def test_a_command_line_import_follows_a_symlinked_images_folder(tmp_path) -> None:  # noqa: ANN001
    """``images/`` linked to another disk: the admin's own folder, so the link is trusted."""
    _photo(tmp_path / "disk" / "A" / "a.jpg", 10)
    _photo(tmp_path / "disk" / "B" / "b.jpg", 20)
    dataset = tmp_path / "data"
    dataset.mkdir()
    (dataset / "images").symlink_to(tmp_path / "disk", target_is_directory=True)
    (dataset / "metadata.csv").write_text(
        "image_id,identity,path\n1,A,images/A/a.jpg\n2,B,images/B/b.jpg\n"
    )
    # Anywhere but the command line (an upload's folder) the same link stays refused.
    species = species_register(name="Zebra")
    plan = dataset_file_plan(path=dataset, species=species)
    assert len(plan.errors) == 2 and "lies outside the dataset" in plan.errors[0]
    # Still refused on the command line: a path written outside the folder.
    (dataset / "metadata.csv").write_text("image_id,identity,path\n1,A,images/../../disk/A/a.jpg\n")
    with pytest.raises(CommandError):
        call_command("import_dataset", str(dataset), "--species", "Zebra", stdout=io.StringIO())
    (dataset / "metadata.csv").write_text(
        "image_id,identity,path\n1,A,images/A/a.jpg\n2,B,images/B/b.jpg\n"
    )
    call_command("import_dataset", str(dataset), "--species", "Zebra", stdout=io.StringIO())
    assert sorted(Annotation.objects.values_list("individual__code", flat=True)) == ["A", "B"]


def test_a_failed_command_line_import_leaves_no_new_species_behind(
    tmp_path,
    settings,
    monkeypatch,  # noqa: ANN001
) -> None:
    from catalogue.models import Species
    from training.services import imports

    metadata = _csv(tmp_path, ["1,A,images/a.jpg,,", "2,B,images/b.jpg,,"])
    plans = []

    def plan_then_damage(**kwargs):  # noqa: ANN003, ANN202 - a photo changes once planned
        plans.append(dataset_file_plan(**kwargs))
        if len(plans) == 2:  # the plan the rows are stored from, after the dry run's
            (tmp_path / "images" / "b.jpg").write_bytes(b"damaged after the dry run")
        return plans[-1]

    monkeypatch.setattr(imports, "dataset_file_plan", plan_then_damage)
    with pytest.raises(CommandError, match="Nothing was imported"):
        call_command("import_dataset", str(metadata), "--species", "Zebra", stdout=io.StringIO())
    assert not Species.objects.exists()
    _nothing_written(settings)
