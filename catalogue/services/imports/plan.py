"""The plan type every import format produces, and the checks they share.

A plan is the dry run: it has opened every photo exactly as the import will (decoded, hashed,
sized upright), checked every box against that size, and kept every path inside the folders
an import may read. ``errors`` non-empty means the import must not run; ``duplicates`` lists
photos already in the catalogue, which the import skips and reports.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from catalogue.models import Image, Individual, Species
from catalogue.photos import photo_read
from reid.schema import BBox, SchemaError, parse_date, parse_viewpoint, validate_bbox
from wildweb.errors import ServiceError


@dataclass(frozen=True)
class ImportRow:
    """One animal to import; several rows may share a photo (one box each).

    ``identity`` empty means "not identified yet": the annotation gets no individual and
    waits for identification. ``bbox`` is in pixels of the upright photo, checked against it.
    """

    line: int | str
    image_id: str
    identity: str
    path: Path
    bbox: BBox | None
    observed_at: datetime | None
    viewpoint: str
    encounter: str
    sha256: str = ""


@dataclass
class ImportPlan:
    """What an import would do; ``errors`` non-empty means it must not run."""

    species: Species
    source: str
    rows: list[ImportRow] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    new_individuals: list[str] = field(default_factory=list)
    existing_individuals: list[str] = field(default_factory=list)
    layout: str = ""

    def report(self) -> dict:
        return {
            "source": self.source,
            "layout": self.layout,
            "species": self.species.name,
            "images": len({row.path for row in self.rows}),
            "annotations": len(self.rows),
            "awaiting_identification": sum(1 for row in self.rows if not row.identity),
            "individuals": len(self.new_individuals) + len(self.existing_individuals),
            "new_individuals": len(self.new_individuals),
            "new_individual_codes": self.new_individuals[:50],
            "existing_individuals": len(self.existing_individuals),
            "duplicate_photos": len(self.duplicates),
            "duplicates": self.duplicates[:200],
            "invalid_rows": len(self.errors),
            "errors": self.errors[:200],
        }


class PhotoChecker:
    """Opens each photo of a plan once, as the import will, and remembers its size and hash.

    Paths must resolve (symbolic links followed) inside one of ``roots``: the dataset's folder
    or unpacked archive, and the server folders of ``settings.IMPORT_ROOTS``. With
    ``follow_links`` a path written inside the dataset's folder is accepted wherever its
    symbolic links lead: the command line's admin is trusted with the server's folders, an
    uploaded dataset is not.
    """

    def __init__(self, roots: list[Path], *, follow_links: bool = False) -> None:
        self.roots = [Path(r).resolve() for r in [*roots, *settings.IMPORT_ROOTS]]
        self.base = self.roots[0]
        self.follow_links = follow_links
        self._seen: dict[Path, tuple[str, int, int] | None] = {}

    def resolve(self, raw: str, where: str, errors: list[str]) -> Path | None:
        """The file a dataset names, or None (with an error) if it is missing or off-limits."""
        if not raw:
            errors.append(f"{where}: empty path")
            return None
        try:
            candidate = Path(raw) if Path(raw).is_absolute() else self.base / raw
            real = candidate.resolve()
        except (OSError, ValueError):  # a NUL byte, a loop of links
            errors.append(f"{where}: {raw!r} is not a usable path")
            return None
        # As written, with ".." taken away but no link followed.
        written = Path(os.path.normpath(candidate))
        allowed = [real, written] if self.follow_links else [real]
        if not any(path.is_relative_to(root) for path in allowed for root in self.roots):
            errors.append(
                f"{where}: {raw} lies outside the dataset"
                + (" and the IMPORT_ROOTS folders" if settings.IMPORT_ROOTS else "")
                + "; paths must stay inside the uploaded archive or dataset folder, or inside a "
                "server folder listed in the IMPORT_ROOTS setting"
            )
            return None
        if not real.is_file():
            errors.append(f"{where}: no file at {raw}")
            return None
        return real

    def open(self, path: Path, where: str, errors: list[str]) -> tuple[str, int, int] | None:
        """``(sha256, width, height)`` of a readable photo, or None with an error."""
        if path not in self._seen:
            try:
                size = path.stat().st_size
                if size > settings.MAX_UPLOAD_BYTES:  # refused before its bytes are read
                    raise ServiceError(
                        f"{path.name}: the file is {size / 1e6:.1f} MB; the limit is "
                        f"{settings.MAX_UPLOAD_BYTES / 1e6:.0f} MB."
                    )
                photo = photo_read(
                    data=path.read_bytes(),
                    filename=path.name,
                    max_bytes=settings.MAX_UPLOAD_BYTES,
                    max_pixels=settings.MAX_IMAGE_PIXELS,
                )
            except ServiceError as error:
                errors.append(f"{where}: {error.message}")
                self._seen[path] = None
            except OSError as error:
                errors.append(f"{where}: {path.name} cannot be read ({error.strerror})")
                self._seen[path] = None
            else:
                self._seen[path] = (photo.sha256, photo.width, photo.height)
        return self._seen[path]


@dataclass(frozen=True)
class RowDraft:
    """A row as a format reads it, before its photo is opened: ``path`` as written."""

    where: str
    image_id: str
    identity: str
    path: str
    bbox: object | None = None
    bbox_relative: bool = False
    observed_at: datetime | None = None
    viewpoint: str = ""
    encounter: str = ""


def plan_finish(
    *,
    plan: ImportPlan,
    drafts: list[RowDraft],
    roots: list[Path],
    max_individuals: int | None = None,
    images_per_individual: int | None = None,
    follow_links: bool = False,
) -> ImportPlan:
    """Select the rows the caps keep, open their photos as the import will, check their boxes.

    The caps apply to identified rows: the first N identities in file order, the first M
    photos of each by path. Rows not yet identified (identity ``""``) are all kept.
    """
    by_identity: OrderedDict[str, list[RowDraft]] = OrderedDict()
    for draft in drafts:
        by_identity.setdefault(draft.identity, []).append(draft)
    identities = [identity for identity in by_identity if identity][:max_individuals]
    selected: list[RowDraft] = []
    for identity in identities:
        selected += sorted(by_identity[identity], key=lambda d: d.path)[:images_per_individual]
    selected += by_identity.get("", [])
    checker = PhotoChecker(roots, follow_links=follow_links)
    for draft in selected:
        checked = _photo_check(checker=checker, plan=plan, draft=draft)
        if checked is not None:
            path, sha256, box = checked
            plan.rows.append(
                ImportRow(
                    line=draft.where,
                    image_id=draft.image_id,
                    identity=draft.identity,
                    path=path,
                    bbox=box,
                    observed_at=draft.observed_at,
                    viewpoint=parse_viewpoint(draft.viewpoint),
                    encounter=draft.encounter or f"row-{draft.where}",
                    sha256=sha256,
                )
            )
    _duplicates_drop(plan)
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
    return plan


def _photo_check(
    *, checker: PhotoChecker, plan: ImportPlan, draft: RowDraft
) -> tuple[Path, str, BBox | None] | None:
    """Resolve, open and box-check one row's photo; None (with an error) when it cannot be
    imported."""
    path = checker.resolve(draft.path, draft.where, plan.errors)
    if path is None:
        return None
    opened = checker.open(path, draft.where, plan.errors)
    if opened is None:
        return None
    sha256, width, height = opened
    box = None
    if draft.bbox is not None:
        try:
            box = validate_bbox(
                draft.bbox, width=width, height=height, relative=draft.bbox_relative
            )
            if draft.bbox_relative:
                x, y, w, h = box
                box = validate_bbox(
                    (x * width, y * height, max(1.0, w * width), max(1.0, h * height)),
                    width=width,
                    height=height,
                )
        except SchemaError as error:
            plan.errors.append(f"{draft.where}: {error}")
            return None
    return path, sha256, box


def _duplicates_drop(plan: ImportPlan) -> None:
    """Leave out, and list, rows whose photo is already in the catalogue (under any species)
    or repeats an earlier file of this dataset; one query for the whole plan."""
    stored = {
        image.sha256: image
        for image in Image.objects.filter(
            sha256__in={row.sha256 for row in plan.rows}
        ).select_related("encounter__species")
    }
    first: dict[str, ImportRow] = {}
    kept: list[ImportRow] = []
    noted: set[Path] = set()
    for row in plan.rows:
        earlier = first.setdefault(row.sha256, row)
        image = stored.get(row.sha256)
        if image is not None:
            note = (
                f"{row.line}: {row.path.name} is already in the catalogue "
                f"({image.encounter.species}, sighting #{image.encounter_id}); it is skipped"
            )
        elif earlier.path != row.path:
            note = f"{row.line}: {row.path.name} is the same photo as {earlier.line}; it is skipped"
        else:
            kept.append(row)
            continue
        if row.path not in noted:  # one note per photo, however many boxes it has
            noted.add(row.path)
            plan.duplicates.append(note)
    plan.rows = kept


def moment_parse(text: object, where: str, errors: list[str]) -> tuple[bool, datetime | None]:
    """``(ok, moment)``: the schema's date, made time-zone aware; an error when invalid."""
    if text in (None, ""):
        return True, None
    try:
        moment = parse_date(str(text))
    except SchemaError as error:
        errors.append(f"{where}: {error}")
        return False, None
    if moment is not None and timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    return True, moment
