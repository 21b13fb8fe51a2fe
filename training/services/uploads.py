"""Imports started from the admin pages and the API: upload, dry-run report, confirm.

The uploaded file waits under ``PRIVATE_ROOT/imports/<token>/`` (no URL maps there) between
the dry run and the confirmation, which plans it again (the catalogue may have changed) and
imports it.
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
from catalogue.services.import_formats import dataset_file_plan, import_folder_remove
from catalogue.services.imports import ImportPlan, ImportResult, dataset_import
from wildweb.errors import ServiceError

TOKEN = re.compile(r"^[0-9a-f]{32}$")


def _folder(token: str) -> Path:
    if not TOKEN.match(token or ""):
        raise ServiceError("Unknown upload; send the file again.")
    folder = Path(settings.PRIVATE_ROOT) / "imports" / token
    if not folder.is_dir():
        raise ServiceError("This upload has expired or was already imported; send it again.")
    return folder


def dataset_upload_store(*, uploaded_file: UploadedFile) -> str:
    """Keep an uploaded dataset file until it is confirmed; returns its token."""
    token = uuid.uuid4().hex
    folder = Path(settings.PRIVATE_ROOT) / "imports" / token
    folder.mkdir(parents=True)
    name = get_valid_filename(Path(uploaded_file.name or "upload").name) or "upload"
    with open(folder / name, "wb") as sink:
        for chunk in uploaded_file.chunks():
            sink.write(chunk)
    return token


def dataset_upload_plan(*, token: str, species: Species, file_format: str | None = None,
                        max_individuals: int | None = None,
                        images_per_individual: int | None = None) -> ImportPlan:
    """The dry-run report of an uploaded file (nothing is imported)."""
    folder = _folder(token)
    files = [p for p in folder.iterdir() if p.is_file()]
    if len(files) != 1:
        raise ServiceError("The upload is incomplete; send it again.")
    return dataset_file_plan(path=files[0], species=species, file_format=file_format or None,
                             max_individuals=max_individuals,
                             images_per_individual=images_per_individual,
                             extract_dir=folder / "unpacked")


def dataset_upload_import(*, token: str, species: Species, imported_by: AbstractBaseUser | None,
                          file_format: str | None = None, max_individuals: int | None = None,
                          images_per_individual: int | None = None) -> ImportResult:
    """Import a confirmed upload (one transaction per batch), then delete the upload.

    Raises:
        ServiceError: The file has invalid entries (nothing is imported) or a photo turned
            out unreadable.
    """
    plan = dataset_upload_plan(token=token, species=species, file_format=file_format,
                               max_individuals=max_individuals,
                               images_per_individual=images_per_individual)
    result = dataset_import(plan=plan, imported_by=imported_by)
    import_folder_remove(path=_folder(token))
    return result


def dataset_upload_discard(*, token: str) -> None:
    import_folder_remove(path=_folder(token))
