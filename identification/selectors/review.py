"""The review: candidates of one animal, the queue of animals waiting, votes and decisions."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Exists, OuterRef, Q, QuerySet

from catalogue.models import Annotation
from identification.models import (
    Identification,
    IdentityDecision,
    MatchCandidate,
    Vote,
)
from reid.ranking import sighting_combine


def candidate_list(*, annotation_id: int) -> Identification | None:
    return (
        Identification.objects.filter(annotation_id=annotation_id)
        .prefetch_related(
            "candidates__individual__species", "candidates__gallery_annotation__image"
        )
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
    best: MatchCandidate  # the photo pair with the highest score for this individual
    photo_count: int  # how many of the animal's photos have this individual among candidates

    @property
    def individual(self):  # noqa: ANN201 - catalogue.Individual
        return self.best.individual

    @property
    def individual_id(self) -> int:
        return self.best.individual_id


def photo_candidates_combine(*, candidates: list[MatchCandidate]) -> list[AnimalCandidate]:
    """One ranking for an animal from the stored candidates of each of its photos.

    ``reid.ranking.sighting_combine`` on the scores the search stored: each individual keeps
    its best photo's score, the order ``evaluate`` measures. A photo's rows are its ranking
    (by ``rank``); photos come in the order of their annotations.

    Args:
        candidates: MatchCandidate rows of any number of photos of the animal.
    """
    photos: dict[int, list[MatchCandidate]] = defaultdict(list)
    for candidate in sorted(candidates, key=lambda c: (c.identification.annotation_id, c.rank)):
        photos[candidate.identification.annotation_id].append(candidate)
    return [
        AnimalCandidate(rank=rank, best=c.best, photo_count=c.photo_count)
        for rank, c in enumerate(sighting_combine(list(photos.values())), start=1)
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
        """Flagged when the animal's first candidate is below the threshold: the flag of the
        photo that candidate's evidence comes from (its search compared the probability of
        its first candidate, which is the animal's first). Without any candidate, when every
        ranked photo is flagged."""
        if self.candidates:
            return self.candidates[0].best.identification.probably_new
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
    return AnimalReview(
        photos=photos,
        identifications=identifications,
        candidates=photo_candidates_combine(candidates=candidates),
    )


def _awaiting_review() -> QuerySet[Identification]:
    """Searches with candidates whose photo nobody has decided yet: the review queue's rule."""
    return Identification.objects.filter(
        state=Identification.State.READY, annotation__individual__isnull=True
    )


def review_queue(*, species_id: int | None = None) -> QuerySet[Identification]:
    """Animals with candidates and no decision yet, oldest first.

    One entry per animal of a sighting (its first photo with candidates), however many photos
    show it.
    """
    waiting = _awaiting_review()
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


def review_queue_photos() -> QuerySet[Annotation]:
    """Every photo of every animal in the review queue: its page shows them all, and its
    ranking may rest on any of them, not only the first photo the queue lists."""
    waiting = _awaiting_review().filter(
        annotation__image__encounter_id=OuterRef("image__encounter_id"),
        annotation__species_id=OuterRef("species_id"),
        annotation__animal_index=OuterRef("animal_index"),
    )
    return Annotation.objects.filter(Exists(waiting))


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
