"""Reporting a sighting: photos in, one encounter with its images and annotations out."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.utils import timezone

from catalogue.models import Annotation, Encounter, Image, Species
from catalogue.photos import Photo, photo_read, thumbnail_bytes
from reid.schema import SchemaError, validate_bbox, validate_coordinates, validate_date
from wildweb.errors import ServiceError, full_clean

BBox = tuple[float, float, float, float]


@dataclass(frozen=True)
class UploadedPhoto:
    filename: str
    data: bytes
    bbox: BBox | None = None  # x, y, w, h in pixels of the upright photo; None = whole photo


@dataclass(frozen=True)
class Duplicate:
    """An uploaded photo already in the catalogue. ``sighting_id`` is None when the photo is
    in someone else's sighting: its number and filename are theirs, not the uploader's."""

    filename: str
    sighting_id: int | None

    @property
    def message(self) -> str:
        if self.sighting_id is not None:
            return (
                f"{self.filename} is already in your sighting #{self.sighting_id}; "
                "it was not stored again."
            )
        return (
            f"{self.filename} is already in the catalogue, reported by someone else; "
            "it was not stored again."
        )


@dataclass
class SightingResult:
    encounter: Encounter | None
    images: list[Image] = field(default_factory=list)
    annotation_ids: list[int] = field(default_factory=list)  # one per stored photo
    duplicates: list[Duplicate] = field(default_factory=list)
    # The job queue (broker) was unreachable: saved, and processing resumes once it is back.
    processing_deferred: bool = False

    @property
    def messages(self) -> list[str]:
        notes = [duplicate.message for duplicate in self.duplicates]
        if self.processing_deferred:
            notes.append(
                "Your sighting is saved. The identification service is unreachable just "
                "now; processing will resume as soon as it is back."
            )
        return notes


def sighting_create(
    *,
    submitted_by: AbstractBaseUser | None,
    species: Species,
    photos: list[UploadedPhoto],
    observed_at: datetime | None = None,
    latitude: float | None = None,
    longitude: float | None = None,
    notes: str = "",
    viewpoint: str = "",
) -> SightingResult:
    """Store a sighting with its photos, all or nothing; it does not start identification.

    ``identification.services.pipeline.sighting_submit`` stores a sighting and queues the
    search for its animals in the same transaction: uploads go through that.

    Every photo is decoded and checked before anything is written. A photo already in the
    catalogue (same sha256) is linked instead of stored again. Date and place default to
    the first photo's EXIF. ``viewpoint`` applies to every photo; the review corrects single
    ones.

    Raises:
        ServiceError: Any photo is unusable, or the sighting lacks a date.
    """
    viewpoint = viewpoint.strip()
    _sighting_request_check(species=species, photos=photos, viewpoint=viewpoint)
    decoded = _photos_decode(photos)
    latitude, longitude = _place_check(latitude=latitude, longitude=longitude)
    _date_check(observed_at)

    existing = {
        image.sha256: image
        for image in Image.objects.filter(
            sha256__in=[photo.sha256 for photo, _ in decoded]
        ).select_related("encounter")
    }
    fresh = _photos_new(decoded, existing)
    result = SightingResult(encounter=None, duplicates=_duplicates(decoded, existing, submitted_by))
    if not fresh:
        return result

    first = fresh[0][0]
    observed_at = observed_at or _exif_moment(first)
    if observed_at is None:
        raise ServiceError(
            "When did you see the animal? The photos carry no date; please give one.",
            field="observed_at",
        )
    if latitude is None and longitude is None:
        latitude, longitude = first.latitude, first.longitude  # photo_read checked the range

    encounter = Encounter(
        species=species,
        observed_at=observed_at,
        latitude=latitude,
        longitude=longitude,
        submitted_by=submitted_by,
        notes=notes,
    )
    _sighting_store(encounter=encounter, fresh=fresh, viewpoint=viewpoint, result=result)
    return result


def _sighting_request_check(
    *, species: Species, photos: list[UploadedPhoto], viewpoint: str
) -> None:
    """Refuse a sighting with no photos, too many, or a viewpoint its species lacks."""
    if not photos:
        raise ServiceError("Please add at least one photo.", field="photos")
    if viewpoint and species.viewpoints and viewpoint not in species.viewpoints:
        raise ServiceError(
            f"{species} photos are {', '.join(species.viewpoints)}; {viewpoint!r} is none of them.",
            field="viewpoint",
        )
    if len(photos) > settings.MAX_PHOTOS_PER_SIGHTING:
        raise ServiceError(f"At most {settings.MAX_PHOTOS_PER_SIGHTING} photos per sighting.")


def _photos_decode(photos: list[UploadedPhoto]) -> list[tuple[Photo, BBox | None]]:
    """Decode every photo, then check every box: an unreadable photo is reported first."""
    decoded = [
        (
            photo_read(
                data=upload.data,
                filename=upload.filename,
                max_bytes=settings.MAX_UPLOAD_BYTES,
                max_pixels=settings.MAX_IMAGE_PIXELS,
            ),
            upload.bbox,
        )
        for upload in photos
    ]
    return [(photo, _bbox_check(photo, bbox)) for photo, bbox in decoded]


def _place_check(
    *, latitude: float | None, longitude: float | None
) -> tuple[float | None, float | None]:
    try:
        return validate_coordinates(latitude, longitude)
    except SchemaError as error:
        raise ServiceError(f"{str(error).capitalize()}.") from None


def _date_check(observed_at: datetime | None) -> None:
    try:
        if observed_at is not None:
            validate_date(observed_at)
    except SchemaError as error:
        raise ServiceError(f"{str(error).capitalize()}.", field="observed_at") from None


def _photos_new(
    decoded: list[tuple[Photo, BBox | None]], existing: dict[str, Image]
) -> list[tuple[Photo, BBox | None]]:
    """The photos not yet in the catalogue, each once however often it was uploaded."""
    fresh: list[tuple[Photo, BBox | None]] = []
    seen: set[str] = set()
    for photo, bbox in decoded:
        if photo.sha256 not in existing and photo.sha256 not in seen:
            seen.add(photo.sha256)
            fresh.append((photo, bbox))
    return fresh


def _sighting_store(
    *,
    encounter: Encounter,
    fresh: list[tuple[Photo, BBox | None]],
    viewpoint: str,
    result: SightingResult,
) -> None:
    """Save the encounter with one image and one annotation per photo, all or nothing."""
    try:
        with atomic_with_files() as stored_files:
            full_clean(encounter)
            encounter.save()
            for photo, bbox in fresh:
                image = store_image(encounter=encounter, photo=photo, stored_files=stored_files)
                x, y, w, h = bbox or (0, 0, photo.width, photo.height)
                annotation = Annotation.objects.create(
                    image=image,
                    species=encounter.species,
                    bbox_x=x,
                    bbox_y=y,
                    bbox_w=w,
                    bbox_h=h,
                    viewpoint=viewpoint[:30],
                )
                result.annotation_ids.append(annotation.pk)
                result.images.append(image)
            result.encounter = encounter
            for image in result.images:
                transaction.on_commit(lambda image_id=image.pk: _enqueue_thumbnail(image_id))
    except IntegrityError:
        raise ServiceError(
            "One of these photos was uploaded by someone else a moment ago; "
            "please submit again to link it."
        ) from None


def image_thumbnail_create(*, image: Image) -> Image:
    """Write the image's thumbnail (idempotent: an existing one is kept)."""
    if image.thumbnail:
        return image
    with image.file.open("rb") as handle:
        content = thumbnail_bytes(handle.read(), settings.THUMBNAIL_SIZE)
    image.thumbnail.save(f"{image.sha256[:32]}.jpg", ContentFile(content), save=False)
    image.save(update_fields=["thumbnail"])
    return image


def store_image(*, encounter: Encounter, photo: Photo, stored_files: list[str]) -> Image:
    image = Image(
        encounter=encounter,
        sha256=photo.sha256,
        width=photo.width,
        height=photo.height,
        original_filename=photo.filename[:255],
        exif_datetime=_aware(photo.taken_at),
        exif_latitude=photo.latitude,
        exif_longitude=photo.longitude,
    )
    image.file.save(f"{photo.sha256[:32]}.jpg", ContentFile(photo.content), save=False)
    stored_files.append(image.file.name)
    image.save()
    return image


def _bbox_check(photo: Photo, bbox: BBox | None) -> BBox | None:
    if bbox is None:
        return None
    try:
        return validate_bbox(bbox, width=photo.width, height=photo.height)
    except SchemaError as error:
        raise ServiceError(f"{photo.filename}: {error}.", field="bboxes") from None


def _duplicates(
    decoded: list[tuple[Photo, BBox | None]],
    existing: dict[str, Image],
    submitted_by: AbstractBaseUser | None,
) -> list[Duplicate]:
    user_id = getattr(submitted_by, "pk", None)
    duplicates = []
    for photo, _ in decoded:
        image = existing.get(photo.sha256)
        if image is not None:
            own = user_id is not None and image.encounter.submitted_by_id == user_id
            duplicates.append(
                Duplicate(filename=photo.filename, sighting_id=image.encounter_id if own else None)
            )
    return duplicates


def _exif_moment(photo: Photo) -> datetime | None:
    """The photo's EXIF date, unless its clock was plainly wrong (before 1900, after tomorrow)."""
    try:
        return _aware(validate_date(photo.taken_at)) if photo.taken_at else None
    except SchemaError:
        return None


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None or timezone.is_aware(moment):
        return moment
    return timezone.make_aware(moment)


# The file list of the outermost ``atomic_with_files`` open in this thread, if any.
_files_stored: ContextVar[list[str] | None] = ContextVar("files_stored", default=None)


@contextmanager
def atomic_with_files() -> Iterator[list[str]]:
    """A transaction that also takes back the photo files stored in it if it rolls back.

    Yields the list to which ``store_image`` appends the names of the files it writes. Once
    the transaction has committed the files belong to its rows and are never deleted, even if
    something after the commit (an on-commit callback) raises. Nested in another one it is a
    savepoint sharing the outer list: it takes back its own files if it rolls back, and the
    outermost takes back every file if it does.
    """
    outer = _files_stored.get()
    if outer is not None:
        start = len(outer)
        try:
            with transaction.atomic():
                yield outer
        except BaseException:
            for name in outer[start:]:  # the savepoint's rows are gone; nothing names these
                default_storage.delete(name)
            del outer[start:]
            raise
        return
    stored: list[str] = []
    committed: list[bool] = []
    token = _files_stored.set(stored)
    try:
        with transaction.atomic():
            transaction.on_commit(lambda: committed.append(True))
            yield stored
    except BaseException:
        if not committed:
            for name in stored:
                default_storage.delete(name)
        raise
    finally:
        _files_stored.reset(token)


def _enqueue_thumbnail(image_id: int) -> None:
    from catalogue.tasks import image_thumbnail_task
    from wildweb.jobs import task_send

    task_send(image_thumbnail_task, image_id)  # broker down: the sweep sends it later


def thumbnails_missing_send() -> int:
    """Send the thumbnail chore for photos stored over a minute ago that still have none.

    Returns:
        How many were sent.
    """
    from catalogue.tasks import image_thumbnail_task
    from wildweb.jobs import task_send

    now = timezone.now()
    # Uploads only (imports make no thumbnails), and only for a day: a chore, not a job.
    missing = Image.objects.filter(
        thumbnail="",
        encounter__submitted_by__isnull=False,
        created_at__range=(now - timedelta(days=1), now - timedelta(minutes=1)),
    )
    sent = 0
    for image_id in missing.values_list("pk", flat=True)[:500]:
        if not task_send(image_thumbnail_task, image_id):
            break
        sent += 1
    return sent


def uploaded_photo_from_file(*, file: object, bbox: BBox | None = None) -> UploadedPhoto:
    """Read an uploaded file, refusing an oversized one before its bytes are read."""
    name = getattr(file, "name", "photo") or "photo"
    size = getattr(file, "size", None)
    if size is not None and size > settings.MAX_UPLOAD_BYTES:
        raise ServiceError(
            f"{name}: the file is {size / 1e6:.1f} MB; the limit is "
            f"{settings.MAX_UPLOAD_BYTES / 1e6:.0f} MB."
        )
    return UploadedPhoto(filename=name, data=file.read(), bbox=tuple(bbox) if bbox else None)
