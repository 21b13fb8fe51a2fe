"""MegaDetector batch output.

``images`` with ``file`` and ``detections`` (``category``, ``conf``, ``bbox`` as fractions
``[x, y, w, h]``); animal detections at or above the confidence threshold become annotations
awaiting identification.
"""

from __future__ import annotations

from pathlib import Path

from catalogue.models import Species
from catalogue.services.imports.json_file import json_load
from catalogue.services.imports.plan import ImportPlan, RowDraft, moment_parse, plan_finish
from reid.schema import SchemaError, finite_number
from wildweb.errors import ServiceError

MEGADETECTOR_ANIMAL = "1"
MEGADETECTOR_MIN_CONFIDENCE = 0.2


def megadetector_plan(
    *,
    path: Path,
    species: Species,
    image_root: Path,
    min_confidence: float = MEGADETECTOR_MIN_CONFIDENCE,
    follow_links: bool = False,
) -> ImportPlan:
    document = json_load(path)
    plan = ImportPlan(species=species, source=str(path), layout="MegaDetector JSON")
    if not isinstance(document, dict) or not isinstance(document.get("images"), list):
        raise ServiceError(f"{path.name}: MegaDetector output needs a list 'images'.")
    animal_categories = {
        key
        for key, name in (document.get("detection_categories") or {}).items()
        if str(name).lower() == "animal"
    } or {MEGADETECTOR_ANIMAL}
    drafts: list[RowDraft] = []
    for index, image in enumerate(document["images"]):
        where = f"images[{index}]"
        if not isinstance(image, dict) or not isinstance(image.get("file"), str):
            plan.errors.append(f"{where}: needs 'file'")
            continue
        if image.get("failure"):
            plan.errors.append(
                f"{where} ({image['file']}): MegaDetector failed: {image['failure']}"
            )
            continue
        detections = image.get("detections")
        if not isinstance(detections, list):
            plan.errors.append(f"{where} ({image['file']}): 'detections' is not a list")
            continue
        ok, moment = moment_parse(image.get("datetime"), where, plan.errors)
        if not ok:
            continue
        for number, detection in enumerate(detections):
            spot = f"{where}.detections[{number}]"
            try:
                if str(detection["category"]) not in animal_categories:
                    continue
                if finite_number(detection.get("conf", 1.0), "conf") < min_confidence:
                    continue
                bbox = detection["bbox"]
            except (KeyError, TypeError, SchemaError):
                plan.errors.append(
                    f"{spot}: needs category, conf and bbox [x, y, w, h] as fractions "
                    "of the photo, inside it"
                )
                continue
            drafts.append(
                RowDraft(
                    where=spot,
                    image_id=image["file"],
                    identity="",
                    path=image["file"],
                    bbox=bbox,
                    bbox_relative=True,
                    observed_at=moment,
                    encounter=f"image-{index}",
                )
            )
    return plan_finish(plan=plan, drafts=drafts, roots=[image_root], follow_links=follow_links)
