"""COCO and COCO Camera Traps JSON.

``images`` (``id``, ``file_name``, optional ``seq_id``, ``datetime``), ``annotations``
(``image_id``, ``bbox`` in pixels, ``category_id``, and an individual id under
``individual_id``, ``identity`` or ``name`` where present), ``categories``. Annotations of an
empty/blank category are left out; annotations without an individual become animals awaiting
identification.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from catalogue.models import Species
from catalogue.services.imports.json_file import json_load
from catalogue.services.imports.plan import ImportPlan, RowDraft, moment_parse, plan_finish
from wildweb.errors import ServiceError

EMPTY_CATEGORIES = {"empty", "blank", "none", "nothing"}


def coco_plan(
    *,
    path: Path,
    species: Species,
    image_root: Path,
    max_individuals: int | None = None,
    images_per_individual: int | None = None,
    follow_links: bool = False,
) -> ImportPlan:
    document = json_load(path)
    plan = ImportPlan(species=species, source=str(path), layout="COCO / CCT JSON")
    if not isinstance(document, dict):
        raise ServiceError(f"{path.name}: expected a JSON object with images and annotations.")
    missing = [key for key in ("images", "annotations") if not isinstance(document.get(key), list)]
    if missing:
        raise ServiceError(f"{path.name}: missing list(s) {', '.join(missing)}.")
    categories = {
        c.get("id"): str(c.get("name", ""))
        for c in document.get("categories") or []
        if isinstance(c, dict)
    }
    images = _images(document["images"], plan.errors)
    drafts: list[RowDraft] = []
    for index, annotation in enumerate(document["annotations"]):
        where = f"annotations[{index}]"
        if not isinstance(annotation, dict):
            plan.errors.append(f"{where}: not an object")
            continue
        where += f" (id {annotation.get('id')})" if "id" in annotation else ""
        image = images.get(_key(annotation.get("image_id")))
        if image is None:
            plan.errors.append(f"{where}: image_id {annotation.get('image_id')!r} is not in images")
            continue
        category = categories.get(annotation.get("category_id"), "")
        if category.strip().lower() in EMPTY_CATEGORIES:
            continue
        if annotation.get("category_id") is not None and categories and not category:
            plan.errors.append(
                f"{where}: category_id {annotation.get('category_id')!r} is not in categories"
            )
            continue
        ok, moment = moment_parse(
            image.get("datetime") or image.get("date_captured"), where, plan.errors
        )
        if not ok:
            continue
        bbox = annotation.get("bbox")
        identity = _individual_of(annotation)
        drafts.append(
            RowDraft(
                where=where,
                image_id=str(image["id"]),
                identity=identity,
                path=str(image["file_name"]),
                bbox=None if bbox in (None, []) else bbox,
                observed_at=moment,
                viewpoint=str(annotation.get("viewpoint") or image.get("viewpoint") or ""),
                encounter=str(
                    image.get("seq_id") or image.get("encounter") or f"image-{image['id']}"
                ),
            )
        )
    return plan_finish(
        plan=plan,
        drafts=drafts,
        roots=[image_root],
        max_individuals=max_individuals,
        images_per_individual=images_per_individual,
        follow_links=follow_links,
    )


def _key(value: Any) -> Any:
    return value if isinstance(value, (str, int)) and not isinstance(value, bool) else None


def _images(entries: list, errors: list[str]) -> dict[Any, dict]:
    images: dict[Any, dict] = {}
    for index, image in enumerate(entries):
        where = f"images[{index}]"
        if (
            not isinstance(image, dict)
            or _key(image.get("id")) is None
            or not isinstance(image.get("file_name"), str)
            or not image["file_name"]
        ):
            errors.append(f"{where}: needs 'id' and 'file_name'")
            continue
        if image["id"] in images:
            errors.append(f"{where}: image id {image['id']!r} repeats")
            continue
        images[image["id"]] = image
    return images


def _individual_of(annotation: dict) -> str:
    for key in ("individual_id", "identity", "name", "individual"):
        value = annotation.get(key)
        if value not in (None, ""):
            return str(value).strip()
    ids = annotation.get("individual_ids")
    if isinstance(ids, list) and ids:
        return str(ids[0]).strip()
    return ""
