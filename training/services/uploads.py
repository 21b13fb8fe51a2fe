"""Imports started from the admin pages and the API: upload, dry-run report, confirm.

The uploaded file (and the ZIP of photos that may come with a CSV or JSON file) waits under
``PRIVATE_ROOT/imports/<token>/`` (no URL maps there) between the dry run and the
confirmation, which plans it again (the catalogue may have changed) and imports it. Django
streams uploads over 5 MB to a temporary file, and they are copied here chunk by chunk, so a
large ZIP never sits in memory.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.uploadedfile import UploadedFile
from django.utils.text import get_valid_filename

from catalogue.models import Species
from catalogue.services.imports import (
    LAYOUTS,
    ImportPlan,
    ImportResult,
    dataset_file_plan,
    import_folder_remove,
)
from catalogue.services.imports.archive import archive_unpack
from identification.services.pipeline import dataset_ingest
from wildweb.errors import ServiceError

TOKEN = re.compile(r"^[0-9a-f]{32}$")


def _folder(token: str) -> Path:
    if not TOKEN.match(token or ""):
        raise ServiceError("Unknown upload; send the file again.")
    folder = Path(settings.PRIVATE_ROOT) / "imports" / token
    if not folder.is_dir():
        raise ServiceError("This upload has expired or was already imported; send it again.")
    return folder


PHOTOS = "photos"  # subfolder holding the ZIP of photos sent beside a CSV or JSON file


def dataset_upload_store(
    *, uploaded_file: UploadedFile, photos_zip: UploadedFile | None = None
) -> str:
    """Keep an uploaded dataset file (and its ZIP of photos) until it is confirmed.

    Returns:
        The upload's token.
    """
    token = uuid.uuid4().hex
    folder = Path(settings.PRIVATE_ROOT) / "imports" / token
    folder.mkdir(parents=True)
    _file_store(uploaded_file, folder)
    if photos_zip is not None:
        if Path(photos_zip.name or "").suffix.lower() != ".zip":
            import_folder_remove(path=folder)
            raise ServiceError(f"The photos must come as a ZIP archive. Accepted: {LAYOUTS}.")
        (folder / PHOTOS).mkdir()
        _file_store(photos_zip, folder / PHOTOS)
    return token


def _file_store(uploaded_file: UploadedFile, folder: Path) -> None:
    name = get_valid_filename(Path(uploaded_file.name or "upload").name) or "upload"
    with open(folder / name, "wb") as sink:
        for chunk in uploaded_file.chunks():
            sink.write(chunk)


def dataset_upload_plan(
    *,
    token: str,
    species: Species,
    file_format: str | None = None,
    max_individuals: int | None = None,
    images_per_individual: int | None = None,
) -> ImportPlan:
    """The dry-run report of an uploaded file (nothing is imported)."""
    folder = _folder(token)
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


def dataset_upload_import(
    *,
    token: str,
    species: Species,
    imported_by: AbstractBaseUser | None,
    file_format: str | None = None,
    max_individuals: int | None = None,
    images_per_individual: int | None = None,
) -> ImportResult:
    """Import a confirmed upload (every row or none), then delete the upload.

    Raises:
        ServiceError: The file has invalid entries (nothing is imported) or a photo turned
            out unreadable.
    """
    plan = dataset_upload_plan(
        token=token,
        species=species,
        file_format=file_format,
        max_individuals=max_individuals,
        images_per_individual=images_per_individual,
    )
    result = dataset_ingest(plan=plan, imported_by=imported_by)
    import_folder_remove(path=_folder(token))
    return result


def dataset_upload_discard(*, token: str) -> None:
    import_folder_remove(path=_folder(token))
