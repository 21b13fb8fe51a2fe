"""An annotation's crop, and its keypoints extracted once and kept."""

from __future__ import annotations

import math

from PIL import Image as PILImage

from catalogue.models import Annotation
from identification.models import LocalFeatures


def annotation_crop(*, annotation: Annotation) -> PILImage.Image:
    """The annotated animal: its box, rotated upright by ``theta`` (radians), as RGB."""
    with annotation.image.file.open("rb") as handle:
        image = PILImage.open(handle)
        image.load()
    image = image.convert("RGB")
    x, y, w, h = annotation.bbox
    if annotation.theta:
        centre = (x + w / 2, y + h / 2)
        image = image.rotate(
            math.degrees(annotation.theta), center=centre, resample=PILImage.BILINEAR
        )
    left, top = max(0, int(round(x))), max(0, int(round(y)))
    right, bottom = min(image.width, int(round(x + w))), min(image.height, int(round(y + h)))
    return image.crop((left, top, max(right, left + 1), max(bottom, top + 1)))


def local_features_ensure(*, annotation: Annotation, method: str) -> LocalFeatures:
    """The annotation's cached keypoints of one method, extracted and stored on first use."""
    cached = LocalFeatures.objects.filter(annotation=annotation, method=method).first()
    if cached is not None:
        return cached
    extracted = local_features_extract(
        annotation_id=annotation.pk, crop=annotation_crop(annotation=annotation), method=method
    )
    features, _ = LocalFeatures.objects.get_or_create(
        annotation=annotation,
        method=method,
        defaults={"data": extracted.data, "keypoint_count": extracted.keypoint_count},
    )
    return features


def local_features_extract(
    *, annotation_id: int, crop: PILImage.Image, method: str
) -> LocalFeatures:
    """The animal's keypoints as an unsaved row (the embedding batch writes them in bulk)."""
    from reid.local_features import extract

    keypoints = extract(crop, method=method)
    return LocalFeatures(
        annotation_id=annotation_id,
        method=method,
        data=keypoints.to_bytes(),
        keypoint_count=len(keypoints),
    )
