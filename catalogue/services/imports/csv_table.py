"""The shared dataset schema: a ``metadata.csv`` read by :mod:`reid.schema`, as ``reid`` reads it.

Columns ``image_id, identity, path`` and optionally ``species`` (informative only: the import
names its species), ``bbox``, ``date``, ``viewpoint``, ``encounter``. Relative paths start at
the CSV's folder.
"""

from __future__ import annotations

from pathlib import Path

from catalogue.models import Species
from catalogue.services.imports.plan import ImportPlan, RowDraft, moment_parse, plan_finish
from reid.schema import SchemaError, parse_bbox, read_metadata_csv
from wildweb.errors import ServiceError


def dataset_plan(
    *,
    metadata_csv: Path,
    species: Species,
    max_individuals: int | None = None,
    images_per_individual: int | None = None,
    image_root: Path | None = None,
    roots: list[Path] | None = None,
    follow_links: bool = False,
) -> ImportPlan:
    """Read and check a ``metadata.csv``, opening its photos; writes nothing.

    Args:
        metadata_csv: The CSV; relative ``path`` values are relative to its folder.
        species: Species the rows become.
        max_individuals: Keep only the first N identities (in file order).
        images_per_individual: Keep only the first N images of each identity (sorted by path);
            the rest stay out of the catalogue, e.g. to be uploaded later as new sightings.
        image_root: Folder relative paths start from (default: the CSV's folder). Photos
            must lie inside it, inside ``roots`` or inside ``settings.IMPORT_ROOTS``.
        roots: More folders the photos may lie in.
        follow_links: Accept a path written inside the dataset's folder wherever its
            symbolic links lead (the command line only; see ``PhotoChecker``).
    """
    plan = ImportPlan(species=species, source=str(metadata_csv), layout="metadata.csv")
    drafts: list[RowDraft] = []
    try:
        for row in read_metadata_csv(metadata_csv):
            where = f"line {row.line}"
            try:
                bbox = parse_bbox(row.get("bbox"))
            except SchemaError as error:
                plan.errors.append(f"{where}: {error}")
                continue
            ok, moment = moment_parse(row.get("date"), where, plan.errors)
            if not ok:
                continue
            drafts.append(
                RowDraft(
                    where=where,
                    image_id=row.get("image_id"),
                    identity=row.get("identity"),
                    path=row.get("path"),
                    bbox=bbox,
                    observed_at=moment,
                    viewpoint=row.get("viewpoint"),
                    encounter=row.get("encounter") or f"row-{row.line}",
                )
            )
    except SchemaError as error:
        raise ServiceError(f"{error}.") from None
    except OSError as error:
        raise ServiceError(f"Cannot open {metadata_csv.name}: {error.strerror}.") from None
    return plan_finish(
        plan=plan,
        drafts=drafts,
        roots=[image_root or metadata_csv.parent, *(roots or [])],
        max_individuals=max_individuals,
        images_per_individual=images_per_individual,
        follow_links=follow_links,
    )
