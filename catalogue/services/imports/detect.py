"""Which format a dataset file is in, and its plan: one entry point for every format.

``csv``
    The shared schema (``metadata.csv``), see :mod:`~catalogue.services.imports.csv_table`.
``coco``
    COCO or COCO Camera Traps JSON, see :mod:`~catalogue.services.imports.coco`.
``megadetector``
    MegaDetector batch output, see :mod:`~catalogue.services.imports.megadetector`.
``zip``
    A ZIP holding any of these with its photos, or one folder per individual, see
    :mod:`~catalogue.services.imports.archive`.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from catalogue.models import Species
from catalogue.services.imports.archive import (
    LAYOUTS,
    archive_layout,
    archive_unpack,
    dataset_root,
)
from catalogue.services.imports.coco import coco_plan
from catalogue.services.imports.csv_table import dataset_plan
from catalogue.services.imports.folders import folders_plan
from catalogue.services.imports.json_file import json_load
from catalogue.services.imports.megadetector import MEGADETECTOR_MIN_CONFIDENCE, megadetector_plan
from catalogue.services.imports.plan import ImportPlan
from wildweb.errors import ServiceError

FORMATS = ("csv", "coco", "megadetector", "zip")


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
        return _json_format(path)
    raise ServiceError(f"{path.name}: unknown format. Accepted: {LAYOUTS}.")


def _json_format(path: Path) -> str:
    document = json_load(path)
    if isinstance(document, dict) and "annotations" in document:
        return "coco"
    if isinstance(document, dict) and isinstance(document.get("images"), list):
        images = document["images"]
        if not images or (isinstance(images[0], dict) and "detections" in images[0]):
            return "megadetector"
    raise ServiceError(
        f"{path.name}: this JSON is neither COCO (no 'annotations') nor "
        "MegaDetector output (no 'images' with 'detections')."
    )


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
    follow_links: bool = False,
) -> ImportPlan:
    """Plan the import of one file (a dry run: nothing is written to the catalogue).

    Args:
        path: The file: ``metadata.csv`` (or its folder), a COCO/CCT or MegaDetector JSON,
            or a ZIP (see :mod:`~catalogue.services.imports.archive`).
        species: Species every imported animal belongs to.
        file_format: One of :data:`FORMATS`; guessed from the file when ``None``.
        max_individuals: Keep only the first N individuals (in file order).
        images_per_individual: Keep only the first N photos of each individual.
        image_root: Folder that relative image paths of a CSV or JSON file start from
            (default: the file's folder); photos must lie inside it.
        extract_dir: Where a ZIP is unpacked (default: a new temporary folder, removed when
            planning fails). Unpacking twice into the same folder is harmless.
        min_confidence: MegaDetector detections below it are left out.
        follow_links: For a dataset in a folder on the server (the command line, whose admin
            is trusted): accept a photo path written inside the dataset's folder wherever its
            symbolic links lead, e.g. ``images/`` linked to another disk. Never for a ZIP.

    Raises:
        ServiceError: The file cannot be read at all (bad JSON, not a ZIP, ...). Problems
            with single entries are listed in ``plan.errors`` instead.
    """
    file_format = file_format or import_format_detect(path=path)
    limits = {"max_individuals": max_individuals, "images_per_individual": images_per_individual}
    if file_format not in FORMATS:
        raise ServiceError(f"Unknown format {file_format!r}; expected one of {', '.join(FORMATS)}.")
    if file_format == "zip":
        return _archive_plan(
            path=path,
            species=species,
            extract_dir=extract_dir,
            min_confidence=min_confidence,
            **limits,
        )
    if file_format == "csv":
        metadata = path / "metadata.csv" if path.is_dir() else path
        return dataset_plan(
            metadata_csv=metadata,
            species=species,
            image_root=image_root,
            follow_links=follow_links,
            **limits,
        )
    if file_format == "coco":
        return coco_plan(
            path=path,
            species=species,
            image_root=image_root or path.parent,
            follow_links=follow_links,
            **limits,
        )
    return megadetector_plan(
        path=path,
        species=species,
        image_root=image_root or path.parent,
        min_confidence=min_confidence,
        follow_links=follow_links,
    )


def _archive_plan(
    *,
    path: Path,
    species: Species,
    extract_dir: Path | None,
    min_confidence: float,
    max_individuals: int | None,
    images_per_individual: int | None,
) -> ImportPlan:
    """Unpack a ZIP and plan the dataset inside it; a temporary folder goes if planning fails."""
    limits = {"max_individuals": max_individuals, "images_per_individual": images_per_individual}
    target = extract_dir or Path(tempfile.mkdtemp(prefix="wildweb-import-"))
    try:
        root = dataset_root(archive_unpack(path=path, target=target))
        layout, document = archive_layout(root)
        if layout == "folders":
            return folders_plan(root=root, species=species, source=str(path), **limits)
        plan = dataset_file_plan(
            path=document,
            species=species,
            image_root=root,
            min_confidence=min_confidence,
            **limits,
        )
    except BaseException:
        if extract_dir is None:
            shutil.rmtree(target, ignore_errors=True)
        raise
    plan.source = f"{path} ({document.name})"
    return plan


def import_folder_remove(*, path: Path) -> None:
    """Remove a folder a ZIP was unpacked into (or an uploaded file's folder)."""
    shutil.rmtree(path, ignore_errors=True)
