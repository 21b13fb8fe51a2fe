"""Reads of identification: nearest neighbours in pgvector, candidates, review queue."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import QuerySet

from identification.models import Identification, IdentityDecision, MatchCandidate, Vote

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
    from catalogue.models import Annotation

    allowed = Annotation.objects.filter(pk__in=[n.annotation_id for n in neighbours])
    if scope.observed_after:
        allowed = allowed.filter(image__encounter__observed_at__gte=scope.observed_after)
    if scope.observed_before:
        allowed = allowed.filter(image__encounter__observed_at__lte=scope.observed_before)
    if scope.region:
        south, west, north, east = scope.region
        allowed = allowed.filter(
            image__encounter__latitude__range=(south, north),
            image__encounter__longitude__range=(west, east),
        )
    keep = set(allowed.values_list("pk", flat=True))
    return [n for n in neighbours if n.annotation_id in keep]


def candidate_list(*, annotation_id: int) -> Identification | None:
    return (
        Identification.objects.filter(annotation_id=annotation_id)
        .prefetch_related("candidates__individual", "candidates__gallery_annotation__image")
        .select_related("annotation__image__encounter", "annotation__species")
        .first()
    )


def review_queue(*, species_id: int | None = None) -> QuerySet[Identification]:
    """Animals with candidates and no decision yet, oldest first."""
    queryset = (
        Identification.objects.filter(
            state=Identification.State.READY, annotation__individual__isnull=True
        )
        .select_related("annotation__image__encounter", "annotation__species")
        .order_by("created_at")
    )
    if species_id:
        queryset = queryset.filter(annotation__species_id=species_id)
    return queryset


@dataclass
class CandidateView:
    candidate: MatchCandidate
    votes_same: int
    votes_different: int
    my_vote: bool | None

    @property
    def suggested(self) -> bool:
        from django.conf import settings

        return self.votes_same - self.votes_different >= settings.VOTES_FOR_SUGGESTION


def review_candidates(
    *, identification: Identification, user: AbstractBaseUser
) -> list[CandidateView]:
    """Candidates in rank order with their volunteers' votes (agreement counts for experts)."""
    votes = Vote.objects.filter(annotation_id=identification.annotation_id)
    tally: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    mine: dict[int, bool] = {}
    for vote in votes:
        tally[vote.individual_id][0 if vote.same else 1] += 1
        if vote.voter_id == user.pk:
            mine[vote.individual_id] = vote.same
    return [
        CandidateView(
            candidate=c,
            votes_same=tally[c.individual_id][0],
            votes_different=tally[c.individual_id][1],
            my_vote=mine.get(c.individual_id),
        )
        for c in identification.candidates.all()
    ]


def decision_history(*, annotation_id: int) -> QuerySet[IdentityDecision]:
    return IdentityDecision.objects.filter(annotation_id=annotation_id).select_related(
        "candidate", "individual_before", "individual_after", "decided_by", "reverted_by"
    )


def review_neighbours(*, identification: Identification) -> tuple[int | None, int | None]:
    """Annotation ids of the previous and next animals in the same species' queue."""
    queue = review_queue(species_id=identification.annotation.species_id)
    earlier = queue.filter(created_at__lt=identification.created_at).order_by("-created_at").first()
    later = queue.filter(created_at__gt=identification.created_at).first()
    return (earlier.annotation_id if earlier else None, later.annotation_id if later else None)
