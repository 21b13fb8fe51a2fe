"""Nearest neighbours in pgvector: the per-species HNSW index and the gallery search."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from django.db import connection, transaction

from catalogue.models import Annotation

MAX_EF_SEARCH = 1000  # pgvector's ceiling for hnsw.ef_search
MIN_EF_SEARCH = 100  # HNSW candidate list; pgvector's default of 40 loses recall at scale


@dataclass(frozen=True)
class Neighbour:
    annotation_id: int
    individual_id: int | None
    cosine: float


@dataclass(frozen=True)
class SearchScope:
    """Optional limits on where and when gallery animals were seen."""

    observed_after: datetime | None = None
    observed_before: datetime | None = None
    region: tuple[float, float, float, float] | None = None  # south, west, north, east (degrees)
    viewpoint: str = ""  # only gallery photos of this viewpoint, or of none


def viewpoint_scope(*, annotation: Annotation) -> SearchScope | None:
    """The gallery limit the species' viewpoint setting puts on this photo's search, if any."""
    if annotation.species.same_viewpoint_only and annotation.viewpoint:
        return SearchScope(viewpoint=annotation.viewpoint)
    return None


def embedding_index_name(*, species_id: int, version_id: int) -> str:
    return f"emb_hnsw_s{int(species_id)}_v{int(version_id)}"


def nearest_sql(*, species_id: int, version_id: int, dim: int, limit: int) -> str:
    """The ANN query; it matches the partial index's predicate so the planner can use it.

    Integers are formatted in (never user text) so the predicate is visible to the planner.
    """
    return f"""
        SELECT e.annotation_id, a.individual_id, 1 - e.distance AS cosine
        FROM (
            SELECT annotation_id,
                   (vector::vector({int(dim)})) <=> %s::vector({int(dim)}) AS distance
            FROM identification_embedding
            WHERE species_id = {int(species_id)} AND model_version_id = {int(version_id)}
            ORDER BY (vector::vector({int(dim)})) <=> %s::vector({int(dim)})
            LIMIT {int(limit)}
        ) e
        JOIN catalogue_annotation a ON a.id = e.annotation_id
    """


def nearest_identified_annotations(
    *,
    species_id: int,
    version_id: int,
    dim: int,
    vector: np.ndarray,
    k: int,
    exclude_annotation_ids: Collection[int] = (),
    scope: SearchScope | None = None,
) -> list[Neighbour]:
    """The ``k`` most similar annotations of known individuals, by cosine, index-backed.

    The HNSW index returns the nearest of all the species' annotations; those not yet
    identified (or outside ``scope``'s dates and region) are dropped afterwards, so the index
    is asked for more until ``k`` remain or the species has no more. Never silently fewer.
    """
    literal = "[" + ",".join(f"{float(v):.7g}" for v in vector) + "]"
    limit = max(4 * k, MIN_EF_SEARCH)
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            _search_settings(cursor, limit)
            cursor.execute(
                nearest_sql(species_id=species_id, version_id=version_id, dim=dim, limit=limit),
                [literal, literal],
            )
            rows = sorted(cursor.fetchall(), key=lambda row: -row[2])
        found = _neighbours_filter(rows, set(exclude_annotation_ids), scope)
        if len(found) >= k:
            return found[:k]
        if len(rows) < limit and _species_rows(species_id, version_id) <= len(rows):
            return found  # the species has no more
        limit *= 4


def _species_rows(species_id: int, version_id: int) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM identification_embedding "
            "WHERE species_id = %s AND model_version_id = %s",
            [species_id, version_id],
        )
        return cursor.fetchone()[0]


def nearest_plan(*, species_id: int, version_id: int, dim: int, limit: int = 40) -> str:
    """The query plan of the search, as ``EXPLAIN`` prints it."""
    zero = "[" + ",".join(["0"] * (dim - 1) + ["1"]) + "]"
    with transaction.atomic(), connection.cursor() as cursor:
        _search_settings(cursor, limit)
        cursor.execute(
            "EXPLAIN "
            + nearest_sql(species_id=species_id, version_id=version_id, dim=dim, limit=limit),
            [zero, zero],
        )
        return "\n".join(row[0] for row in cursor.fetchall())


def _search_settings(cursor, limit: int) -> None:  # noqa: ANN001
    if limit > MAX_EF_SEARCH:
        # Past what an HNSW scan can return: an exact scan of this species' rows only.
        cursor.execute("SET LOCAL enable_indexscan = off")
        return
    cursor.execute(f"SET LOCAL hnsw.ef_search = {max(limit, MIN_EF_SEARCH)}")
    # A small species looks cheaper to scan and sort than to search; the index is right at
    # every size, and the plan must not flip as a species grows (Wildbook's exact scans timed
    # out at scale). Without seq scans and sorts, the HNSW scan is the only ordered path.
    cursor.execute("SET LOCAL enable_seqscan = off")
    cursor.execute("SET LOCAL enable_sort = off")


def _neighbours_filter(
    rows: list[tuple], excluded: set[int], scope: SearchScope | None
) -> list[Neighbour]:
    neighbours = [
        Neighbour(annotation_id, individual_id, float(cosine))
        for annotation_id, individual_id, cosine in rows
        if individual_id is not None and annotation_id not in excluded
    ]
    if scope is None:
        return neighbours
    allowed = Annotation.objects.filter(pk__in=[n.annotation_id for n in neighbours])
    if scope.observed_after:
        allowed = allowed.filter(image__encounter__observed_at__gte=scope.observed_after)
    if scope.observed_before:
        allowed = allowed.filter(image__encounter__observed_at__lte=scope.observed_before)
    if scope.viewpoint:
        allowed = allowed.filter(viewpoint__in=["", scope.viewpoint])
    if scope.region:
        south, west, north, east = scope.region
        allowed = allowed.filter(
            image__encounter__latitude__range=(south, north),
            image__encounter__longitude__range=(west, east),
        )
    keep = set(allowed.values_list("pk", flat=True))
    return [n for n in neighbours if n.annotation_id in keep]
