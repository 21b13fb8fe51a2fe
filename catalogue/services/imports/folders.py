"""One folder per individual: ``<individual>/<photo>`` (the layout of an unpacked ZIP)."""

from __future__ import annotations

from pathlib import Path

from catalogue.models import Species
from catalogue.services.imports.archive import LAYOUTS, hidden
from catalogue.services.imports.plan import ImportPlan, RowDraft, plan_finish

_ACCEPTED = f"accepted layouts: {LAYOUTS}"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp"}


def folders_plan(
    *,
    root: Path,
    species: Species,
    source: str,
    max_individuals: int | None = None,
    images_per_individual: int | None = None,
) -> ImportPlan:
    """Every file under ``root`` must be ``<individual>/<photo>``; others are listed as errors."""
    plan = ImportPlan(species=species, source=source, layout="one folder per individual")
    drafts: list[RowDraft] = []
    layout_named = False
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root)
        where = relative.as_posix()
        if hidden(where):
            continue
        if len(relative.parts) != 2:
            plan.errors.append(
                f"{where}: expected <individual>/<photo>, one folder per individual"
                + ("" if layout_named else f" (no metadata.csv or .json was found; {_ACCEPTED})")
            )
            layout_named = True
            continue
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            plan.errors.append(f"{where}: not a photo (.jpg, .png, ...)")
            continue
        drafts.append(
            RowDraft(
                where=where,
                image_id=where,
                identity=relative.parts[0].strip(),
                path=where,
                encounter=f"file-{where}",
            )
        )
    return plan_finish(
        plan=plan,
        drafts=drafts,
        roots=[root],
        max_individuals=max_individuals,
        images_per_individual=images_per_individual,
    )
