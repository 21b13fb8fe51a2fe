"""Reads of identification: nearest neighbours in pgvector, candidates, review queue."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
from django.db import connection, transaction
from django.db.models import QuerySet

from identification.models import Identification

MAX_EF_SEARCH = 1000  # pgvector's ceiling for hnsw.ef_search


@dataclass(frozen=True)
class Neighbour:
    annotation_id: int
    individual_id: int | None
    cosine: float


def embedding_index_name(*, species_id: int, version_id: int) -> str:
    return f"emb_hnsw_s{int(species_id)}_v{int(version_id)}"


def nearest_sql(*, species_id: int, version_id: int, dim: int, limit: int) -> str:
    """The ANN query; it matches the partial index's predicate so the planner can use it.

    Integers are formatted in (never user text) so the predicate is visible to the planner.
    """
    return f"""
        SELECT e.annotation_id, a.individual_id, 1 - e.distance AS cosine
        FROM (
            SELECT annotation_id, (vector::vector({int(dim)})) <=> %s::vector({int(dim)}) AS distance
            FROM identification_embedding
            WHERE species_id = {int(species_id)} AND model_version_id = {int(version_id)}
            ORDER BY (vector::vector({int(dim)})) <=> %s::vector({int(dim)})
            LIMIT {int(limit)}
        ) e
        JOIN catalogue_annotation a ON a.id = e.annotation_id
        ORDER BY e.distance
    """


def nearest_identified_annotations(
    *, species_id: int, version_id: int, dim: int, vector: np.ndarray, k: int,
    exclude_annotation_id: int | None = None, observed_after: datetime | None = None,
    observed_before: datetime | None = None,
) -> list[Neighbour]:
    """The ``k`` most similar annotations of known individuals, by cosine, index-backed.

    The HNSW index returns the nearest of all the species' annotations; those not yet
    identified (or outside the date range) are dropped afterwards, so the index is asked for
    more until ``k`` remain or the species has no more. Never silently fewer.
    """
    literal = "[" + ",".join(f"{float(v):.7g}" for v in vector) + "]"
    limit = max(4 * k, 40)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM identification_embedding WHERE species_id = %s AND model_version_id = %s",
            [species_id, version_id])
        total = cursor.fetchone()[0]
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL hnsw.ef_search = {min(max(limit, 40), MAX_EF_SEARCH)}")
            if limit > MAX_EF_SEARCH:
                # Past the index's reach: an exact scan of this species' rows only.
                cursor.execute("SET LOCAL enable_indexscan = off")
            cursor.execute(nearest_sql(species_id=species_id, version_id=version_id, dim=dim,
                                       limit=limit), [literal, literal])
            rows = cursor.fetchall()
        found = _neighbours_filter(rows, exclude_annotation_id, observed_after, observed_before)
        if len(found) >= k or limit >= total:
            return found[:k]
        limit *= 4


def _neighbours_filter(rows: list[tuple], exclude_annotation_id: int | None,
                       observed_after: datetime | None,
                       observed_before: datetime | None) -> list[Neighbour]:
    neighbours = [Neighbour(annotation_id, individual_id, float(cosine))
                  for annotation_id, individual_id, cosine in rows
                  if individual_id is not None and annotation_id != exclude_annotation_id]
    if observed_after or observed_before:
        from catalogue.models import Annotation

        allowed = Annotation.objects.filter(pk__in=[n.annotation_id for n in neighbours])
        if observed_after:
            allowed = allowed.filter(image__encounter__observed_at__gte=observed_after)
        if observed_before:
            allowed = allowed.filter(image__encounter__observed_at__lte=observed_before)
        keep = set(allowed.values_list("pk", flat=True))
        neighbours = [n for n in neighbours if n.annotation_id in keep]
    return neighbours


def candidate_list(*, annotation_id: int) -> Identification | None:
    return (Identification.objects.filter(annotation_id=annotation_id)
            .prefetch_related("candidates__individual", "candidates__gallery_annotation__image")
            .select_related("annotation__image__encounter", "annotation__species").first())


def review_queue(*, species_id: int | None = None) -> QuerySet[Identification]:
    """Animals with candidates and no decision yet, oldest first."""
    queryset = (Identification.objects.filter(state=Identification.State.READY,
                                              annotation__individual__isnull=True)
                .select_related("annotation__image__encounter", "annotation__species")
                .order_by("created_at"))
    if species_id:
        queryset = queryset.filter(annotation__species_id=species_id)
    return queryset
