"""Reads of identification: nearest neighbours in pgvector, candidates, review queue."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import Q, QuerySet

from catalogue.models import Annotation
from identification.models import (
    EmbeddingJob,
    Identification,
    IdentityDecision,
    MatchCandidate,
    SpeciesModel,
    Vote,
)

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


def candidate_list(*, annotation_id: int) -> Identification | None:
    return (
        Identification.objects.filter(annotation_id=annotation_id)
        .prefetch_related("candidates__individual", "candidates__gallery_annotation__image")
        .select_related("annotation__image__encounter", "annotation__species")
        .first()
    )


def animal_photos(*, annotation: Annotation) -> list[Annotation]:
    """Every photo of the animal ``annotation`` shows in its sighting, first photo first.

    By default all of a sighting's annotations of one species are one animal; a photo split
    off to be identified alone has an ``animal_index`` of its own.
    """
    return list(
        Annotation.objects.filter(
            image__encounter_id=annotation.image.encounter_id,
            species_id=annotation.species_id,
            animal_index=annotation.animal_index,
        )
        .select_related("image__encounter", "species", "individual")
        .order_by("pk")
    )


@dataclass
class AnimalCandidate:
    """One individual the animal could be, with the best evidence any of its photos gave."""

    rank: int
    best: MatchCandidate  # the photo pair with the strongest evidence for this individual
    photo_count: int  # how many of the animal's photos have this individual among candidates

    @property
    def individual(self):  # noqa: ANN201 - catalogue.Individual
        return self.best.individual

    @property
    def individual_id(self) -> int:
        return self.best.individual_id


def _evidence(candidate: MatchCandidate, method: str) -> tuple[float, ...]:
    """How strongly a photo's candidate row speaks for its individual, by the species' method.

    The same order as the per-photo ranking, so a sighting of one photo ranks as that photo.
    """
    if method == "embedding":
        return (candidate.embedding_score,)
    if method == "local":
        return (float(candidate.inlier_count or 0), candidate.embedding_score)
    return (candidate.fused_score,)


def photo_candidates_combine(
    *, candidates: list[MatchCandidate], method: str = "fused"
) -> list[AnimalCandidate]:
    """One ranking for an animal from the ranked candidates of each of its photos.

    An individual's evidence is its best photo's (the maximum probability), not the sum of
    log-odds over photos. Photos of one sighting share light, pose and background, so their
    evidence is far from independent: summing would count one look several times over, and
    would need an invented score wherever an individual is missing from one photo's short
    list. With the maximum, the photo that shows the animal best (often the only flank shot)
    decides, and a weak extra photo can never push the right individual down. Ties go to the
    individual more photos agree on.

    Args:
        candidates: MatchCandidate rows of any number of photos of the animal.
        method: The species' ranking method: ``fused``, ``embedding`` or ``local``.
    """
    best: dict[int, MatchCandidate] = {}
    photos: dict[int, set[int]] = defaultdict(set)
    for candidate in candidates:
        photos[candidate.individual_id].add(candidate.identification_id)
        held = best.get(candidate.individual_id)
        if held is None or _evidence(candidate, method) > _evidence(held, method):
            best[candidate.individual_id] = candidate
    order = sorted(
        best.values(),
        key=lambda c: (_evidence(c, method), len(photos[c.individual_id]), -c.rank),
        reverse=True,
    )
    return [
        AnimalCandidate(rank=rank, best=c, photo_count=len(photos[c.individual_id]))
        for rank, c in enumerate(order, start=1)
    ]


@dataclass
class AnimalReview:
    """What the review page shows of one animal: its photos, their states, one ranking."""

    photos: list[Annotation]
    identifications: list[Identification]
    candidates: list[AnimalCandidate]

    @property
    def lead(self) -> Annotation:
        return self.photos[0]

    @property
    def photo_ids(self) -> list[int]:
        return [photo.pk for photo in self.photos]

    @property
    def pending(self) -> int:
        """Photos the model is still working on."""
        ranked = {i.annotation_id for i in self.identifications if i.model_version_id}
        return len([p for p in self.photos if p.pk not in ranked and p.individual_id is None])

    @property
    def probably_new(self) -> bool:
        """Flagged when every ranked photo says "probably new" (with the maximum rule, exactly
        when the sighting's best candidate is below the threshold)."""
        ranked = [i for i in self.identifications if i.model_version_id]
        return bool(ranked) and all(i.probably_new for i in ranked)

    @property
    def model_version_id(self) -> int | None:
        return next((i.model_version_id for i in self.identifications if i.model_version_id), None)


def animal_review(*, annotation: Annotation) -> AnimalReview:
    photos = animal_photos(annotation=annotation)
    identifications = list(
        Identification.objects.filter(annotation__in=photos).order_by("annotation_id")
    )
    candidates = list(
        MatchCandidate.objects.filter(identification__in=identifications).select_related(
            "individual", "gallery_annotation__image", "identification"
        )
    )
    # A species without a setting ranks by the default method (a read never creates one).
    method = (
        SpeciesModel.objects.filter(species_id=annotation.species_id)
        .values_list("ranking_method", flat=True)
        .first()
        or SpeciesModel.RankingMethod.FUSED
    )
    return AnimalReview(
        photos=photos,
        identifications=identifications,
        candidates=photo_candidates_combine(candidates=candidates, method=method),
    )


def review_queue(*, species_id: int | None = None) -> QuerySet[Identification]:
    """Animals with candidates and no decision yet, oldest first.

    One entry per animal of a sighting (its first photo with candidates), however many photos
    show it.
    """
    waiting = Identification.objects.filter(
        state=Identification.State.READY, annotation__individual__isnull=True
    )
    if species_id:
        waiting = waiting.filter(annotation__species_id=species_id)
    animal = (
        "annotation__image__encounter_id",
        "annotation__species_id",
        "annotation__animal_index",
    )
    firsts = waiting.order_by(*animal, "annotation_id").distinct(*animal).values("pk")
    return (
        Identification.objects.filter(pk__in=firsts)
        .select_related("annotation__image__encounter", "annotation__species")
        .order_by("created_at", "pk")
    )


def review_pending_count(*, species_id: int | None = None) -> int:
    """Photos still waiting for the model: while any are, the queue page refreshes itself."""
    queued = Identification.objects.filter(
        state=Identification.State.QUEUED, annotation__individual__isnull=True
    )
    if species_id:
        queued = queued.filter(annotation__species_id=species_id)
    return queued.count()


@dataclass
class CandidateView:
    candidate: AnimalCandidate
    votes_same: int
    votes_different: int
    my_vote: bool | None

    @property
    def suggested(self) -> bool:
        from django.conf import settings

        return self.votes_same - self.votes_different >= settings.VOTES_FOR_SUGGESTION


def review_candidates(*, review: AnimalReview, user: AbstractBaseUser) -> list[CandidateView]:
    """The animal's candidates in rank order with its volunteers' votes.

    Volunteers vote on the animal, whichever of its photos the vote was stored with; a
    volunteer counts once per individual, with their latest vote.
    """
    latest: dict[tuple[int, int], bool] = {}
    for vote in Vote.objects.filter(annotation_id__in=review.photo_ids).order_by("voted_at", "pk"):
        latest[(vote.voter_id, vote.individual_id)] = vote.same
    tally: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    mine: dict[int, bool] = {}
    for (voter_id, individual_id), same in latest.items():
        tally[individual_id][0 if same else 1] += 1
        if voter_id == user.pk:
            mine[individual_id] = same
    return [
        CandidateView(
            candidate=c,
            votes_same=tally[c.individual_id][0],
            votes_different=tally[c.individual_id][1],
            my_vote=mine.get(c.individual_id),
        )
        for c in review.candidates
    ]


def decisions_covering(*, annotation_ids: list[int]) -> QuerySet[IdentityDecision]:
    """Decisions that applied to any of these photos, newest first."""
    covers = Q(pk__in=[])
    for annotation_id in annotation_ids:
        covers |= Q(annotation_ids__contains=[annotation_id])
    return IdentityDecision.objects.filter(covers).select_related(
        "candidate", "individual_before", "individual_after", "decided_by", "reverted_by"
    )


def review_neighbours(*, review: AnimalReview) -> tuple[int | None, int | None]:
    """Annotation ids of the previous and next animals in the same species' queue."""
    queue = review_queue(species_id=review.lead.species_id).exclude(
        annotation_id__in=review.photo_ids
    )
    if not review.identifications:
        return (None, queue.first().annotation_id if queue.exists() else None)
    since = min(i.created_at for i in review.identifications)
    earlier = queue.filter(created_at__lt=since).order_by("-created_at", "-pk").first()
    later = queue.filter(created_at__gte=since).first()
    return (earlier.annotation_id if earlier else None, later.annotation_id if later else None)


@dataclass(frozen=True)
class LiveAccuracy:
    """How the ranking did on the experts' standing decisions, per species and model."""

    species: str
    model_version: str
    confirmed: int  # decisions that an individual already known is the animal
    top1: int
    top5: int
    new: int  # decisions that the animal is a new individual
    flagged: int  # decisions where "probably new" was up
    flagged_new: int  # ... and the animal was indeed new

    @staticmethod
    def share(part: int, whole: int) -> float | None:
        return part / whole if whole else None

    @property
    def top1_rate(self) -> float | None:
        return self.share(self.top1, self.confirmed)

    @property
    def top5_rate(self) -> float | None:
        return self.share(self.top5, self.confirmed)

    @property
    def flag_precision(self) -> float | None:
        """How often "probably new" was right."""
        return self.share(self.flagged_new, self.flagged)

    @property
    def new_flagged_rate(self) -> float | None:
        """How many of the truly new animals were flagged."""
        return self.share(self.flagged_new, self.new)


def live_accuracy() -> list[LiveAccuracy]:
    """Every standing expert decision on a ranked animal, counted as evaluation data.

    Decisions made before the ranking was recorded with them (no model version) and
    rejections (they say who the animal is not) are left out.
    """
    rows: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    decisions = IdentityDecision.objects.filter(
        reverted_at__isnull=True,
        model_version__isnull=False,
        verdict__in=[IdentityDecision.Verdict.SAME, IdentityDecision.Verdict.NEW],
    ).values_list(
        "annotation__species__name",
        "model_version__name",
        "verdict",
        "confirmed_rank",
        "probably_new",
    )
    for species, version, verdict, rank, flagged in decisions:
        row = rows[(species, version)]
        if verdict == IdentityDecision.Verdict.SAME:
            row["confirmed"] += 1
            row["top1"] += rank == 1
            row["top5"] += rank is not None and rank <= 5
        else:
            row["new"] += 1
        row["flagged"] += bool(flagged)
        row["flagged_new"] += bool(flagged) and verdict == IdentityDecision.Verdict.NEW
    return [
        LiveAccuracy(
            species=species,
            model_version=version,
            **{k: row[k] for k in ("confirmed", "top1", "top5", "new", "flagged", "flagged_new")},
        )
        for (species, version), row in sorted(rows.items())
    ]


def species_model_get(*, species_id: int) -> SpeciesModel | None:
    """The species' model setting as stored (``None``: it ranks with version 0); never creates."""
    return (
        SpeciesModel.objects.select_related("model_version", "previous_version", "pending_version")
        .filter(species_id=species_id)
        .first()
    )


def reembedding_progress(*, setting: SpeciesModel | None) -> dict[str, int] | None:
    """Annotations of the species embedded under its pending version so far (None: none pending)."""
    if setting is None or setting.pending_version_id is None:
        return None
    return embedding_progress(species_id=setting.species_id, version_id=setting.pending_version_id)


def embedding_progress(*, species_id: int, version_id: int) -> dict[str, int]:
    """How many of the species' annotations have a finished (or failed) job under a version."""
    total = Annotation.objects.filter(species_id=species_id).count()
    jobs = EmbeddingJob.objects.filter(
        model_version_id=version_id, annotation__species_id=species_id
    )
    done = jobs.filter(state=EmbeddingJob.State.DONE).count()
    failed = jobs.filter(state=EmbeddingJob.State.FAILED).count()
    return {
        "total": total,
        "done": done,
        "failed": failed,
        "percent": round(100 * done / total) if total else 100,
    }
