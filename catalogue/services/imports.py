"""Importing labelled photos in the shared dataset schema (``metadata.csv``).

The schema is wildlife-datasets': ``image_id, identity, path, species`` and optionally
``bbox, date, viewpoint, encounter``. An import is planned first (a dry run that reads no
pixels and writes nothing, listing every invalid line), then carried out in one transaction
per batch. Photos already in the catalogue (same sha256) are skipped, so re-running an
import is harmless.
"""

from __future__ import annotations

import csv
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from catalogue.models import Annotation, Encounter, Image, Individual, Species
from catalogue.photos import photo_read
from catalogue.services.sightings import atomic_with_files, store_image
from wildweb.errors import ServiceError

REQUIRED_COLUMNS = ("image_id", "identity", "path")


@dataclass(frozen=True)
class ImportRow:
    """One animal to import; several rows may share a photo (one box each).

    ``identity`` empty means "not identified yet": the annotation gets no individual and
    waits for identification. ``bbox_relative`` boxes are fractions of the photo's size.
    """

    line: int | str
    image_id: str
    identity: str
    path: Path
    bbox: tuple[float, float, float, float] | None
    observed_at: datetime | None
    viewpoint: str
    encounter: str
    bbox_relative: bool = False


@dataclass
class ImportPlan:
    """What an import would do; ``errors`` non-empty means it must not run."""

    species: Species
    source: str
    rows: list[ImportRow] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    new_individuals: list[str] = field(default_factory=list)
    existing_individuals: list[str] = field(default_factory=list)

    def report(self) -> dict:
        return {
            "source": self.source,
            "species": self.species.name,
            "images": len({row.path for row in self.rows}),
            "annotations": len(self.rows),
            "awaiting_identification": sum(1 for row in self.rows if not row.identity),
            "individuals": len(self.new_individuals) + len(self.existing_individuals),
            "new_individuals": len(self.new_individuals),
            "existing_individuals": len(self.existing_individuals),
            "invalid_rows": len(self.errors),
            "errors": self.errors[:200],
        }


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


def dataset_plan(
    *,
    metadata_csv: Path,
    species: Species,
    max_individuals: int | None = None,
    images_per_individual: int | None = None,
) -> ImportPlan:
    """Read and check a ``metadata.csv`` without touching pixels or the database's tables.

    Args:
        metadata_csv: The CSV; relative ``path`` values are relative to its folder.
        species: Species the rows become; a ``species`` column, if any, is informative only.
        max_individuals: Keep only the first N identities (in file order).
        images_per_individual: Keep only the first N images of each identity (sorted by path);
            the rest stay out of the catalogue, e.g. to be uploaded later as new sightings.
    """
    plan = ImportPlan(species=species, source=str(metadata_csv))
    try:
        handle = open(metadata_csv, newline="", encoding="utf-8-sig")
    except OSError as error:
        raise ServiceError(f"Cannot open {metadata_csv}: {error.strerror}.") from None
    with handle:
        reader = csv.DictReader(handle)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ServiceError(
                f"{metadata_csv.name}: missing column(s) {', '.join(missing)}; "
                f"expected at least {', '.join(REQUIRED_COLUMNS)}."
            )
        by_identity: OrderedDict[str, list[ImportRow]] = OrderedDict()
        for line, record in enumerate(reader, start=2):
            row = _row_parse(record, line, metadata_csv.parent, plan.errors)
            if row is not None:
                by_identity.setdefault(row.identity, []).append(row)

    plan_rows_select(
        plan=plan,
        by_identity=by_identity,
        max_individuals=max_individuals,
        images_per_individual=images_per_individual,
    )
    return plan


def plan_rows_select(
    *,
    plan: ImportPlan,
    by_identity: dict[str, list[ImportRow]],
    max_individuals: int | None = None,
    images_per_individual: int | None = None,
) -> None:
    """Fill ``plan.rows`` and the new/existing individual lists from rows grouped by identity.

    Rows under the identity ``""`` (not identified yet) are all kept; the caps apply to the
    identified ones: the first N identities in file order, the first M photos each by path.
    """
    identities = [identity for identity in by_identity if identity][:max_individuals]
    for identity in identities:
        rows = sorted(by_identity[identity], key=lambda r: str(r.path))
        plan.rows.extend(rows[:images_per_individual])
    plan.rows.extend(by_identity.get("", []))
    known = (
        set()
        if plan.species.pk is None
        else set(
            Individual.objects.filter(species=plan.species, code__in=identities).values_list(
                "code", flat=True
            )
        )
    )
    plan.existing_individuals = [i for i in identities if i in known]
    plan.new_individuals = [i for i in identities if i not in known]


def dataset_import(
    *, plan: ImportPlan, imported_by: AbstractBaseUser | None = None, batch_size: int = 100
) -> ImportResult:
    """Carry out a plan, one transaction per batch of rows.

    Raises:
        ServiceError: The plan has invalid rows (nothing is imported), or a photo turns out
            unreadable (its batch is rolled back and the import stops, naming the line).
    """
    if plan.errors:
        raise ServiceError(
            f"{len(plan.errors)} invalid row(s); nothing was imported. First: {plan.errors[0]}"
        )
    result = ImportResult()
    known_hashes = set(
        Image.objects.filter(encounter__species=plan.species).values_list("sha256", flat=True)
    )
    # Rows of one photo stay in one batch, so a photo's boxes are imported together.
    rows = sorted(plan.rows, key=lambda r: str(r.path)) if _shares_photos(plan.rows) else plan.rows
    batches: list[list[ImportRow]] = []
    for row in rows:
        if batches and (len(batches[-1]) < batch_size or batches[-1][-1].path == row.path):
            batches[-1].append(row)
        else:
            batches.append([row])
    for batch in batches:
        with atomic_with_files() as stored:
            _batch_import(plan, batch, imported_by, result, known_hashes, stored)
    from identification.services.embedding import species_embeddings_enqueue

    # Also picks up annotations of an earlier, interrupted import.
    species_embeddings_enqueue(species=plan.species)
    return result


def _shares_photos(rows: list[ImportRow]) -> bool:
    return len({row.path for row in rows}) < len(rows)


def _batch_import(
    plan: ImportPlan,
    batch: list[ImportRow],
    imported_by: AbstractBaseUser | None,
    result: ImportResult,
    known_hashes: set[str],
    stored: list[str],
) -> None:
    encounters: dict[str, Encounter] = {}
    images: dict[Path, Image | None] = {}  # photo of this batch -> stored image (None: skipped)
    for row in batch:
        if row.path in images:
            image = images[row.path]
            if image is None:
                continue
            width, height = image.width, image.height
        else:
            try:
                photo = photo_read(
                    data=row.path.read_bytes(),
                    filename=row.path.name,
                    max_bytes=settings.MAX_UPLOAD_BYTES,
                    max_pixels=settings.MAX_IMAGE_PIXELS,
                )
            except (ServiceError, OSError) as error:
                message = getattr(error, "message", None) or str(error)
                raise ServiceError(f"line {row.line}: {message}") from None
            if photo.sha256 in known_hashes:
                result.duplicates_skipped += 1
                images[row.path] = None
                continue
            known_hashes.add(photo.sha256)
            encounter = encounters.get(row.encounter)
            if encounter is None:
                status = (
                    Encounter.Status.IDENTIFIED if row.identity else Encounter.Status.PROCESSING
                )
                encounter = Encounter.objects.create(
                    species=plan.species,
                    observed_at=row.observed_at,
                    submitted_by=imported_by,
                    status=status,
                    notes=f"Imported from {plan.source}",
                )
                encounters[row.encounter] = encounter
            image = store_image(encounter=encounter, photo=photo, stored_files=stored)
            images[row.path] = image
            width, height = photo.width, photo.height
        individual = None
        if row.identity:
            individual, created = Individual.objects.get_or_create(
                species=plan.species, code=row.identity
            )
            result.individuals_created += created
        x, y, w, h = row.bbox or (0, 0, width, height)
        if row.bbox_relative and row.bbox:
            x, y, w, h = x * width, y * height, max(1.0, w * width), max(1.0, h * height)
        result.annotations.append(
            Annotation.objects.create(
                image=image,
                species=plan.species,
                bbox_x=x,
                bbox_y=y,
                bbox_w=w,
                bbox_h=h,
                viewpoint=row.viewpoint[:30],
                individual=individual,
                identity_source=(
                    Annotation.IdentitySource.IMPORT
                    if individual
                    else Annotation.IdentitySource.UNKNOWN
                ),
            )
        )


def _row_parse(record: dict, line: int, root: Path, errors: list[str]) -> ImportRow | None:
    identity = (record.get("identity") or "").strip()
    raw_path = (record.get("path") or "").strip()
    if not raw_path:
        errors.append(f"line {line}: empty path")
        return None
    path = Path(raw_path) if Path(raw_path).is_absolute() else root / raw_path
    if not path.is_file():
        errors.append(f"line {line}: no file at {raw_path}")
        return None
    bbox = None
    raw_bbox = (record.get("bbox") or "").strip()
    if raw_bbox:
        try:
            values = json.loads(raw_bbox if raw_bbox.startswith("[") else f"[{raw_bbox}]")
            bbox = tuple(float(v) for v in values)
            if len(bbox) != 4 or bbox[2] < 1 or bbox[3] < 1 or min(bbox) < 0:
                raise ValueError
        except (ValueError, TypeError):
            errors.append(f"line {line}: bbox {raw_bbox!r} is not x,y,w,h with positive size")
            return None
    observed_at = None
    raw_date = (record.get("date") or "").strip()
    if raw_date:
        observed_at = parse_datetime(raw_date) or parse_datetime(raw_date + "T00:00:00")
        if observed_at is None:
            errors.append(f"line {line}: date {raw_date!r} is not an ISO date")
            return None
        if timezone.is_naive(observed_at):
            observed_at = timezone.make_aware(observed_at)
    return ImportRow(
        line=line,
        image_id=(record.get("image_id") or "").strip(),
        identity=identity,
        path=path,
        bbox=bbox,
        observed_at=observed_at,
        viewpoint=(record.get("viewpoint") or "").strip(),
        encounter=(record.get("encounter") or "").strip() or f"row-{line}",
    )
