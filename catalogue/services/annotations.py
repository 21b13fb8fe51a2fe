"""Correcting an annotation: its viewpoint and its box."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser

from catalogue.models import Annotation
from catalogue.roles import DECIDE_PERMISSION
from reid.schema import BBox, SchemaError, validate_bbox
from wildweb.errors import ServiceError


def annotation_update(
    *,
    annotation: Annotation,
    changed_by: AbstractBaseUser,
    viewpoint: str | None = None,
    bbox: BBox | None = None,
) -> Annotation:
    """Set an annotation's viewpoint or box; it is saved only if one of them changed.

    The animal is not searched for again here: the review calls
    ``identification.services.pipeline.annotation_correct``, which does both at once.

    Args:
        annotation: The photo's annotation.
        changed_by: An expert.
        viewpoint: The new viewpoint ("" for none), or None to keep it.
        bbox: The new box (x, y, width, height in pixels of the upright photo), or None.

    Raises:
        ServiceError: Not an expert, an unknown viewpoint, or a box outside the photo.
    """
    if not changed_by.has_perm(DECIDE_PERMISSION):
        raise ServiceError("Only experts can correct a photo's box or viewpoint.")
    changed: list[str] = []
    if viewpoint is not None:
        viewpoint = viewpoint.strip()
        allowed = annotation.species.viewpoints
        if viewpoint and allowed and viewpoint not in allowed:
            raise ServiceError(
                f"{viewpoint!r} is not a viewpoint of {annotation.species}; "
                f"choose one of {', '.join(allowed)}.",
                field="viewpoint",
            )
        if len(viewpoint) > 30:
            raise ServiceError("A viewpoint has at most 30 characters.", field="viewpoint")
        if viewpoint != annotation.viewpoint:
            annotation.viewpoint = viewpoint
            changed.append("viewpoint")
    if bbox is not None:
        x, y, w, h = bbox_checked(
            bbox=bbox, width=annotation.image.width, height=annotation.image.height
        )
        if (x, y, w, h) != annotation.bbox:
            annotation.bbox_x, annotation.bbox_y, annotation.bbox_w, annotation.bbox_h = x, y, w, h
            changed += ["bbox_x", "bbox_y", "bbox_w", "bbox_h"]
    if changed:
        annotation.save(update_fields=changed)
    return annotation


def bbox_checked(*, bbox: object, width: int, height: int) -> BBox:
    """The box as four finite numbers inside a ``width``×``height`` photo, or a clear error."""
    if isinstance(bbox, (list, tuple)) and all(isinstance(v, str) for v in bbox):
        bbox = ", ".join(bbox)  # the review form's four text fields
    try:
        return validate_bbox(bbox, width=width, height=height)
    except SchemaError as error:
        raise ServiceError(f"{str(error).capitalize()}.", field="bbox") from None
