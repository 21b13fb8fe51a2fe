"""Planning imports of labelled data in formats other than the shared CSV schema.

Every format becomes an :class:`~catalogue.services.imports.ImportPlan` (a dry run listing
counts, new and existing individuals and every invalid entry with its location), which
:func:`~catalogue.services.imports.dataset_import` then carries out one transaction per batch.

``csv``
    The shared schema (``metadata.csv``), see :mod:`catalogue.services.imports`.
``coco``
    COCO or COCO Camera Traps JSON: ``images`` (``file_name``, optional ``seq_id``,
    ``datetime``), ``annotations`` (``image_id``, ``bbox`` in pixels, ``category_id``, and an
    individual id under ``individual_id``, ``identity`` or ``name`` where present),
    ``categories``. Annotations of an empty/blank category are left out; annotations without
    an individual become animals awaiting identification.
``megadetector``
    MegaDetector batch output: ``images`` with ``file`` and ``detections`` (``category``,
    ``conf``, ``bbox`` as fractions ``[x, y, w, h]``); animal detections at or above the
    confidence threshold become annotations awaiting identification.
``zip``
    A ZIP archive holding one folder per individual (optionally inside one top folder).

Photos are opened only to read their header (size, format), never decoded, while planning.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import zipfile
from collections import OrderedDict
from pathlib import Path, PurePosixPath
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from catalogue.models import Species
from catalogue.services.imports import ImportPlan, ImportRow, dataset_plan, plan_rows_select
from wildweb.errors import ServiceError

FORMATS = ("csv", "coco", "megadetector", "zip")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp"}
EMPTY_CATEGORIES = {"empty", "blank", "none", "nothing"}
MEGADETECTOR_ANIMAL = "1"
MEGADETECTOR_MIN_CONFIDENCE = 0.2
MAX_ZIP_MEMBERS = 100_000
MAX_ZIP_BYTES = 20 * 2**30


def import_format_detect(*, path: Path) -> str:
    """Guess the format of a file from its name and, for JSON, its top-level keys."""
    suffix = path.suffix.lower()
    if path.is_dir():
        if (path / "metadata.csv").is_file():
            return "csv"
        raise ServiceError(f"{path} is a folder without metadata.csv.")
    if suffix == ".csv":
        return "csv"
    if suffix == ".zip":
        return "zip"
    if suffix == ".json":
        document = _json_load(path)
        if isinstance(document, dict) and "annotations" in document:
            return "coco"
        if (
            isinstance(document, dict)
            and isinstance(document.get("images"), list)
            and (
                not document["images"]
                or "detections" in document["images"][0]
                or "file" in document["images"][0]
            )
        ):
            return "megadetector"
        raise ServiceError(
            f"{path.name}: JSON is neither COCO (no 'annotations') nor "
            "MegaDetector output (no 'images' with 'detections')."
        )
    raise ServiceError(f"{path.name}: unknown format; give one of {', '.join(FORMATS)}.")


def dataset_file_plan(
    *,
    path: Path,
    species: Species,
    file_format: str | None = None,
    max_individuals: int | None = None,
    images_per_individual: int | None = None,
    image_root: Path | None = None,
    extract_dir: Path | None = None,
    min_confidence: float = MEGADETECTOR_MIN_CONFIDENCE,
) -> ImportPlan:
    """Plan the import of one file (a dry run: nothing is written to the catalogue).

    Args:
        path: The file: ``metadata.csv`` (or its folder), a COCO/CCT or MegaDetector JSON,
            or a ZIP of one folder per individual.
        species: Species every imported animal belongs to.
        file_format: One of :data:`FORMATS`; guessed from the file when ``None``.
        max_individuals: Keep only the first N individuals (in file order).
        images_per_individual: Keep only the first N photos of each individual.
        image_root: Folder that relative image paths of a JSON file start from (default:
            the JSON file's folder).
        extract_dir: Where a ZIP is unpacked (default: a new temporary folder). Unpacking
            twice into the same folder is harmless.
        min_confidence: MegaDetector detections below it are left out.

    Raises:
        ServiceError: The file cannot be read at all (bad JSON, not a ZIP, ...). Problems
            with single entries are listed in ``plan.errors`` instead.
    """
    file_format = file_format or import_format_detect(path=path)
    limits = {"max_individuals": max_individuals, "images_per_individual": images_per_individual}
    if file_format == "csv":
        metadata = path / "metadata.csv" if path.is_dir() else path
        return dataset_plan(metadata_csv=metadata, species=species, **limits)
    if file_format == "coco":
        return _coco_plan(path, species, image_root or path.parent, **limits)
    if file_format == "megadetector":
        return _megadetector_plan(path, species, image_root or path.parent, min_confidence)
    if file_format == "zip":
        target = extract_dir or Path(tempfile.mkdtemp(prefix="wildweb-import-"))
        return _zip_plan(path, species, target, **limits)
    raise ServiceError(f"Unknown format {file_format!r}; expected one of {', '.join(FORMATS)}.")


def import_folder_remove(*, path: Path) -> None:
    """Remove a folder a ZIP was unpacked into (or an uploaded file's folder)."""
    shutil.rmtree(path, ignore_errors=True)


def _json_load(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8-sig") as handle:
            return json.load(handle)
    except OSError as error:
        raise ServiceError(f"Cannot open {path.name}: {error.strerror}.") from None
    except UnicodeDecodeError:
        raise ServiceError(f"{path.name}: not UTF-8 text.") from None
    except json.JSONDecodeError as error:
        raise ServiceError(
            f"{path.name}: line {error.lineno}, column {error.colno}: {error.msg}."
        ) from None


def _image_check(path: Path, where: str, errors: list[str]) -> tuple[int, int] | None:
    """The photo's size from its header, or None (with an error) if it is not a photo."""
    if not path.is_file():
        errors.append(f"{where}: no file at {path}")
        return None
    try:
        with PILImage.open(path) as image:
            return image.size
    except (UnidentifiedImageError, OSError):
        errors.append(f"{where}: {path.name} is not a readable image")
        return None


def _observed_at(text: Any) -> Any:
    if not text or not isinstance(text, str):
        return None
    moment = parse_datetime(text.replace(" ", "T", 1)) or parse_datetime(text + "T00:00:00")
    if moment is not None and timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    return moment


def _bbox(value: Any, relative: bool) -> tuple[float, float, float, float] | None:
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise ValueError
    x, y, w, h = (float(v) for v in value)
    if min(x, y) < 0 or w <= 0 or h <= 0:
        raise ValueError
    if relative and (x + w > 1.0001 or y + h > 1.0001):
        raise ValueError
    if not relative and (w < 1 or h < 1):
        raise ValueError
    return (x, y, w, h)


def _individual_of(annotation: dict) -> str:
    for key in ("individual_id", "identity", "name", "individual"):
        value = annotation.get(key)
        if value not in (None, ""):
            return str(value).strip()
    ids = annotation.get("individual_ids")
    if isinstance(ids, list) and ids:
        return str(ids[0]).strip()
    return ""


def _coco_plan(
    path: Path,
    species: Species,
    root: Path,
    *,
    max_individuals: int | None,
    images_per_individual: int | None,
) -> ImportPlan:
    document = _json_load(path)
    plan = ImportPlan(species=species, source=str(path))
    if not isinstance(document, dict):
        raise ServiceError(f"{path.name}: expected a JSON object with images and annotations.")
    missing = [key for key in ("images", "annotations") if not isinstance(document.get(key), list)]
    if missing:
        raise ServiceError(f"{path.name}: missing list(s) {', '.join(missing)}.")
    categories = {
        c.get("id"): str(c.get("name", ""))
        for c in document.get("categories") or []
        if isinstance(c, dict)
    }
    images: dict[Any, dict] = {}
    sizes: dict[Any, tuple[int, int] | None] = {}
    for index, image in enumerate(document["images"]):
        where = f"images[{index}]"
        if not isinstance(image, dict) or "id" not in image or not image.get("file_name"):
            plan.errors.append(f"{where}: needs 'id' and 'file_name'")
            continue
        if image["id"] in images:
            plan.errors.append(f"{where}: image id {image['id']!r} repeats")
            continue
        images[image["id"]] = image
    by_identity: OrderedDict[str, list[ImportRow]] = OrderedDict()
    for index, annotation in enumerate(document["annotations"]):
        where = f"annotations[{index}]"
        if not isinstance(annotation, dict):
            plan.errors.append(f"{where}: not an object")
            continue
        where += f" (id {annotation.get('id')})" if "id" in annotation else ""
        image = images.get(annotation.get("image_id"))
        if image is None:
            plan.errors.append(f"{where}: image_id {annotation.get('image_id')!r} is not in images")
            continue
        category = categories.get(annotation.get("category_id"), "")
        if category.strip().lower() in EMPTY_CATEGORIES:
            continue
        if annotation.get("category_id") is not None and categories and not category:
            plan.errors.append(
                f"{where}: category_id {annotation.get('category_id')!r} is not in categories"
            )
            continue
        image_path = Path(image["file_name"])
        image_path = image_path if image_path.is_absolute() else root / image_path
        if image["id"] not in sizes:
            sizes[image["id"]] = _image_check(image_path, f"images id {image['id']!r}", plan.errors)
        size = sizes[image["id"]]
        if size is None:
            continue
        bbox = None
        if annotation.get("bbox") not in (None, []):
            try:
                bbox = _bbox(annotation["bbox"], relative=False)
            except (ValueError, TypeError):
                plan.errors.append(
                    f"{where}: bbox {annotation['bbox']!r} is not [x, y, w, h] "
                    "in pixels with positive size"
                )
                continue
            if bbox[0] + bbox[2] > size[0] + 1 or bbox[1] + bbox[3] > size[1] + 1:
                plan.errors.append(
                    f"{where}: bbox {annotation['bbox']!r} lies outside the "
                    f"{size[0]}x{size[1]} photo"
                )
                continue
        identity = _individual_of(annotation)
        encounter = str(image.get("seq_id") or image.get("encounter") or f"image-{image['id']}")
        by_identity.setdefault(identity, []).append(
            ImportRow(
                line=where,
                image_id=str(image["id"]),
                identity=identity,
                path=image_path,
                bbox=bbox,
                observed_at=_observed_at(image.get("datetime") or image.get("date_captured")),
                viewpoint=str(annotation.get("viewpoint") or image.get("viewpoint") or ""),
                encounter=encounter,
            )
        )
    plan_rows_select(
        plan=plan,
        by_identity=by_identity,
        max_individuals=max_individuals,
        images_per_individual=images_per_individual,
    )
    return plan


def _megadetector_plan(
    path: Path, species: Species, root: Path, min_confidence: float
) -> ImportPlan:
    document = _json_load(path)
    plan = ImportPlan(species=species, source=str(path))
    if not isinstance(document, dict) or not isinstance(document.get("images"), list):
        raise ServiceError(f"{path.name}: MegaDetector output needs a list 'images'.")
    animal_categories = {
        key
        for key, name in (document.get("detection_categories") or {}).items()
        if str(name).lower() == "animal"
    } or {MEGADETECTOR_ANIMAL}
    rows: list[ImportRow] = []
    for index, image in enumerate(document["images"]):
        where = f"images[{index}]"
        if not isinstance(image, dict) or not image.get("file"):
            plan.errors.append(f"{where}: needs 'file'")
            continue
        if image.get("failure"):
            plan.errors.append(
                f"{where} ({image['file']}): MegaDetector failed: {image['failure']}"
            )
            continue
        detections = image.get("detections")
        if not isinstance(detections, list):
            plan.errors.append(f"{where} ({image['file']}): 'detections' is not a list")
            continue
        kept = []
        for number, detection in enumerate(detections):
            spot = f"{where}.detections[{number}]"
            try:
                if str(detection["category"]) not in animal_categories:
                    continue
                if float(detection.get("conf", 1.0)) < min_confidence:
                    continue
                kept.append(_bbox(detection["bbox"], relative=True))
            except (KeyError, TypeError, ValueError):
                plan.errors.append(
                    f"{spot}: needs category and bbox [x, y, w, h] as fractions "
                    "of the photo, inside it"
                )
        if not kept:
            continue
        image_path = Path(image["file"])
        image_path = image_path if image_path.is_absolute() else root / image_path
        if _image_check(image_path, f"{where}", plan.errors) is None:
            continue
        for number, bbox in enumerate(kept):
            rows.append(
                ImportRow(
                    line=f"{where}.detections[{number}]",
                    image_id=str(image["file"]),
                    identity="",
                    path=image_path,
                    bbox=bbox,
                    observed_at=_observed_at(image.get("datetime")),
                    viewpoint="",
                    encounter=f"image-{index}",
                    bbox_relative=True,
                )
            )
    plan_rows_select(plan=plan, by_identity={"": rows})
    return plan


def _zip_plan(
    path: Path,
    species: Species,
    target: Path,
    *,
    max_individuals: int | None,
    images_per_individual: int | None,
) -> ImportPlan:
    plan = ImportPlan(species=species, source=str(path))
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        raise ServiceError(f"{path.name}: not a ZIP archive.") from None
    with archive:
        members = [
            m
            for m in archive.infolist()
            if not m.is_dir()
            and not PurePosixPath(m.filename).name.startswith(".")
            and "__MACOSX" not in PurePosixPath(m.filename).parts
        ]
        if len(members) > MAX_ZIP_MEMBERS or sum(m.file_size for m in members) > MAX_ZIP_BYTES:
            raise ServiceError(f"{path.name}: too large to import in one go.")
        if not members:
            raise ServiceError(f"{path.name}: the archive holds no files.")
        parts = [PurePosixPath(m.filename).parts for m in members]
        # One wrapping folder ("dataset/<individual>/<photo>") is allowed and dropped.
        tops = {p[0] for p in parts}
        strip = 1 if len(tops) == 1 and all(len(p) >= 3 for p in parts) else 0
        by_identity: OrderedDict[str, list[ImportRow]] = OrderedDict()
        target.mkdir(parents=True, exist_ok=True)
        for member, member_parts in zip(members, parts):
            where = f"{member.filename}"
            inner = member_parts[strip:]
            if any(part in ("..", "") for part in member_parts) or member.filename.startswith("/"):
                plan.errors.append(f"{where}: unsafe path")
                continue
            if len(inner) != 2:
                plan.errors.append(
                    f"{where}: expected <individual>/<photo>, one folder per individual"
                )
                continue
            if PurePosixPath(inner[1]).suffix.lower() not in IMAGE_SUFFIXES:
                plan.errors.append(f"{where}: not a photo (.jpg, .png, ...)")
                continue
            destination = target.joinpath(*member_parts)
            if not destination.is_file() or destination.stat().st_size != member.file_size:
                destination.parent.mkdir(parents=True, exist_ok=True)
                try:
                    with archive.open(member) as source, open(destination, "wb") as sink:
                        shutil.copyfileobj(source, sink)
                except (zipfile.BadZipFile, OSError) as error:
                    plan.errors.append(f"{where}: cannot be unpacked ({error})")
                    continue
            if _image_check(destination, where, plan.errors) is None:
                continue
            identity = inner[0].strip()
            by_identity.setdefault(identity, []).append(
                ImportRow(
                    line=where,
                    image_id=member.filename,
                    identity=identity,
                    path=destination,
                    bbox=None,
                    observed_at=None,
                    viewpoint="",
                    encounter=f"file-{member.filename}",
                )
            )
    plan_rows_select(
        plan=plan,
        by_identity=by_identity,
        max_individuals=max_individuals,
        images_per_individual=images_per_individual,
    )
    return plan
