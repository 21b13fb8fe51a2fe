"""Carrying out an import plan: every row or none, in one transaction.

Photos already in the catalogue (same sha256, under any species) are skipped and counted,
so re-running an import is harmless and never breaks the unique photo hash.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError

from catalogue.models import Annotation, Encounter, Image, Individual
from catalogue.photos import photo_read
from catalogue.services.imports.plan import ImportPlan, ImportRow
from catalogue.services.sightings import atomic_with_files, store_image
from wildweb.errors import ServiceError


@dataclass
class ImportResult:
    annotations: list[Annotation] = field(default_factory=list)
    individuals_created: int = 0
    duplicates_skipped: int = 0

    def report(self) -> dict:
        return {
            "annotations_created": len(self.annotations),
            "individuals_created": self.individuals_created,
            "duplicates_skipped": self.duplicates_skipped,
        }


def dataset_import(
    *,
    plan: ImportPlan,
    imported_by: AbstractBaseUser | None = None,
    progress: Callable[[int], object] | None = None,
) -> ImportResult:
    """Carry out a plan in one transaction: every row is imported, or none is.

    Photo files written before a failure are deleted with the rollback. ``progress`` is
    called with 1 after each row (e.g. a tqdm bar's ``update``). Nothing is embedded:
    ``identification.services.pipeline.dataset_ingest`` imports and queues the embedding.

    Raises:
        ServiceError: The plan has invalid rows, or a photo changed since the dry run, or
            someone stored one of the photos meanwhile; nothing is imported, and the message
            says which line failed.
    """
    if plan.errors:
        raise ServiceError(
            f"{len(plan.errors)} invalid row(s); nothing was imported. First: {plan.errors[0]}"
        )
    result = ImportResult(duplicates_skipped=len(plan.duplicates))
    try:
        with atomic_with_files() as stored:
            _rows_import(plan, imported_by, result, stored, progress or (lambda _: None))
    except IntegrityError:
        raise ServiceError(
            "One of these photos was stored by someone else during the import; nothing was "
            "imported. Check the file again to see it listed as a duplicate."
        ) from None
    return result


def _rows_import(
    plan: ImportPlan,
    imported_by: AbstractBaseUser | None,
    result: ImportResult,
    stored: list[str],
    progress: Callable[[int], object],
) -> None:
    known = set(
        Image.objects.filter(sha256__in={row.sha256 for row in plan.rows}).values_list(
            "sha256", flat=True
        )
    )
    encounters: dict[str, Encounter] = {}
    individuals: dict[str, Individual] = {}
    images: dict[Path, Image | None] = {}  # photo -> stored image (None: already there)
    for row in plan.rows:
        progress(1)
        if row.path not in images:
            images[row.path] = _image_store(plan, row, imported_by, known, encounters, stored)
            result.duplicates_skipped += images[row.path] is None
        image = images[row.path]
        if image is None:
            continue
        individual = None
        if row.identity:
            individual = individuals.get(row.identity)
            if individual is None:
                individual, created = Individual.objects.get_or_create(
                    species=plan.species, code=row.identity
                )
                individuals[row.identity] = individual
                result.individuals_created += created
        x, y, w, h = row.bbox or (0, 0, image.width, image.height)
        result.annotations.append(
            Annotation.objects.create(
                image=image,
                species=plan.species,
                bbox_x=x,
                bbox_y=y,
                bbox_w=w,
                bbox_h=h,
                viewpoint=row.viewpoint,
                individual=individual,
                identity_source=(
                    Annotation.IdentitySource.IMPORT
                    if individual
                    else Annotation.IdentitySource.UNKNOWN
                ),
            )
        )


def _image_store(
    plan: ImportPlan,
    row: ImportRow,
    imported_by: AbstractBaseUser | None,
    known: set[str],
    encounters: dict[str, Encounter],
    stored: list[str],
) -> Image | None:
    if row.sha256 in known:  # stored since the dry run
        return None
    try:
        photo = photo_read(
            data=row.path.read_bytes(),
            filename=row.path.name,
            max_bytes=settings.MAX_UPLOAD_BYTES,
            max_pixels=settings.MAX_IMAGE_PIXELS,
        )
    except ServiceError as error:
        raise ServiceError(f"{row.line}: {error.message} Nothing was imported.") from None
    except OSError as error:
        raise ServiceError(
            f"{row.line}: {row.path.name} cannot be read ({error.strerror}). Nothing was imported."
        ) from None
    if photo.sha256 != row.sha256:
        raise ServiceError(
            f"{row.line}: {row.path.name} changed since the dry run; check the file again. "
            "Nothing was imported."
        )
    known.add(photo.sha256)
    encounter = encounters.get(row.encounter)
    if encounter is None:
        encounter = Encounter.objects.create(
            species=plan.species,
            observed_at=row.observed_at,
            submitted_by=imported_by,
            status=Encounter.Status.IDENTIFIED if row.identity else Encounter.Status.PROCESSING,
            notes=f"Imported from {Path(plan.source).name}",
        )
        encounters[row.encounter] = encounter
    return store_image(encounter=encounter, photo=photo, stored_files=stored)
