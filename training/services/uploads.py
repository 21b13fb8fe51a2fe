"""Uploaded dataset files: keeping them, and planning them (the dry run).

The uploaded file (and the ZIP of photos that may come with a CSV or JSON file) waits under
``PRIVATE_ROOT/imports/<uuid>/`` (no URL maps there) while its import job
(:mod:`training.services.imports`) plans it, waits for the confirmation and stores it. Django
streams uploads over 5 MB to a temporary file, and they are copied here chunk by chunk, so a
large ZIP never sits in memory.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.utils.text import get_valid_filename

from catalogue.models import Species
from catalogue.services.imports import (
    LAYOUTS,
    ImportPlan,
    dataset_file_plan,
    import_folder_remove,
)
from catalogue.services.imports.archive import archive_unpack
from wildweb.errors import ServiceError

PHOTOS = "photos"  # subfolder holding the ZIP of photos sent beside a CSV or JSON file


def dataset_upload_store(
    *, uploaded_file: UploadedFile, photos_zip: UploadedFile | None = None
) -> Path:
    """Keep an uploaded dataset file (and its ZIP of photos) until its import ends.

    Returns:
        The upload's own folder.
    """
    folder = import_folder_new()
    _file_store(uploaded_file, folder)
    if photos_zip is not None:
        if Path(photos_zip.name or "").suffix.lower() != ".zip":
            import_folder_remove(path=folder)
            raise ServiceError(f"The photos must come as a ZIP archive. Accepted: {LAYOUTS}.")
        (folder / PHOTOS).mkdir()
        _file_store(photos_zip, folder / PHOTOS)
    return folder


def import_folder_new() -> Path:
    """A new, empty working folder for one import, under ``PRIVATE_ROOT/imports/``."""
    folder = Path(settings.PRIVATE_ROOT) / "imports" / uuid.uuid4().hex
    folder.mkdir(parents=True)
    return folder


def _file_store(uploaded_file: UploadedFile, folder: Path) -> None:
    name = get_valid_filename(Path(uploaded_file.name or "upload").name) or "upload"
    with open(folder / name, "wb") as sink:
        for chunk in uploaded_file.chunks():
            sink.write(chunk)


def dataset_upload_plan(
    *,
    folder: Path,
    species: Species,
    file_format: str | None = None,
    max_individuals: int | None = None,
    images_per_individual: int | None = None,
) -> ImportPlan:
    """The plan of an uploaded file: its dry-run report (nothing is imported)."""
    files = [p for p in folder.iterdir() if p.is_file()]
    photos = [p for p in (folder / PHOTOS).glob("*") if p.is_file()]
    if len(files) != 1:
        raise ServiceError("The upload is incomplete; send it again.")
    image_root = None
    if photos and files[0].suffix.lower() != ".zip":
        # Paths in the file are relative to the ZIP's top, as they were beside the file.
        image_root = archive_unpack(path=photos[0], target=folder / "unpacked")
    plan = dataset_file_plan(
        path=files[0],
        species=species,
        file_format=file_format or None,
        max_individuals=max_individuals,
        images_per_individual=images_per_individual,
        image_root=image_root,
        extract_dir=folder / "unpacked",
    )
    if plan.errors and not photos and files[0].suffix.lower() in (".csv", ".json"):
        plan.errors.insert(
            0,
            f"{files[0].name} came without its photos: a CSV or JSON file "
            "alone brings no images. Upload a ZIP holding it and its photos, "
            "or add a ZIP of the photos.",
        )
    return plan
